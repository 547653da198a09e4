//! `allowed_outbound_hosts`: which scheme, host and port a component may call. Anything not listed is
//! refused in the host before a connection is attempted. A host granted only through a wildcard
//! (`https://*`, `*.example.com`) is a fetch on someone's behalf: it may reach public addresses only
//! ([`Grant::Public`], enforced where the connection is made, `crate::public`).

use anyhow::{Context, bail};

/// One `scheme://host[:port]` entry, with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// `None` means any scheme.
    scheme: Option<String>,
    host: HostMatch,
    /// `None` means any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain of the suffix.
    Subdomain(String),
}

/// A component's outbound permissions.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostPattern {
    fn parse(entry: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = entry
            .split_once("://")
            .with_context(|| format!("`{entry}` needs a scheme, e.g. `https://{entry}`"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("`{entry}` must not contain a path");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                (host, Some(port))
            }
            _ => (rest, None),
        };
        let scheme = match scheme {
            "*" => None,
            s if s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-') =>
            {
                Some(s.to_ascii_lowercase())
            }
            s => bail!("`{entry}`: invalid scheme `{s}`"),
        };
        let port = match port {
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .with_context(|| format!("`{entry}`: invalid port `{p}`"))?,
            ),
            None => match scheme.as_deref().and_then(default_port) {
                Some(p) => Some(p),
                None => bail!("`{entry}`: give a port (or `:*`) for this scheme"),
            },
        };
        let host = match host {
            "" => bail!("`{entry}`: missing host"),
            "*" => HostMatch::Any,
            h if h.starts_with("*.") => HostMatch::Subdomain(h[1..].to_ascii_lowercase()),
            h if h.contains('*') => {
                bail!("`{entry}`: `*` may only be a whole host or a leading `*.`")
            }
            h => HostMatch::Exact(h.to_ascii_lowercase()),
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether the pattern names hosts only through a wildcard. `*.spin.internal` counts as naming
    /// them: it is how Spin grants chaining to every component of the application.
    fn is_wildcard(&self) -> bool {
        match &self.host {
            HostMatch::Exact(_) => false,
            HostMatch::Subdomain(suffix) => suffix != ".spin.internal",
            HostMatch::Any => true,
        }
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Exact(h) => h == host,
                HostMatch::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            }
    }
}

impl AllowedHosts {
    /// Parses a component's list (templates already expanded). An entry that expanded to nothing
    /// grants nothing: a variable left blank turns its service off (`llm_url` for extractive
    /// answers) without editing the manifest.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let patterns = entries
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| HostPattern::parse(e).with_context(|| "in allowed_outbound_hosts"))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { patterns })
    }

    /// Whether a request to `uri` may leave the host.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        self.grant(uri).is_some()
    }

    /// How a request to `uri` is allowed, if it is: a host listed by name may be any address (the
    /// stores on loopback, say); one matched only by a wildcard must be public.
    pub fn grant(&self, uri: &http::Uri) -> Option<Grant> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme))?;
        let mut matching = self
            .patterns
            .iter()
            .filter(|p| p.allows(&scheme, &host, port))
            .peekable();
        matching.peek()?;
        if matching.any(|p| !p.is_wildcard()) {
            Some(Grant::Listed)
        } else {
            Some(Grant::Public)
        }
    }
}

/// How an outbound request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The host is listed by name: whatever address it has.
    Listed,
    /// Only a wildcard matches: the address connected to must be public (`shared::net::refusal`).
    Public,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entries: &[&str], uri: &str, allowed: bool) {
        let hosts = AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            hosts.allows(&uri.parse().unwrap()),
            allowed,
            "{entries:?} {uri}"
        );
    }

    #[test]
    fn matching() {
        check(&[], "http://example.com/", false);
        check(&["https://example.com"], "https://example.com/x", true);
        check(&["https://example.com"], "https://example.com:443/x", true);
        check(&["https://example.com"], "http://example.com/x", false);
        check(
            &["https://example.com"],
            "https://example.com:8443/x",
            false,
        );
        check(&["https://example.com"], "https://api.example.com/x", false);
        check(
            &["https://*.example.com"],
            "https://api.example.com/x",
            true,
        );
        check(&["https://*.example.com"], "https://example.com/x", false);
        check(&["http://127.0.0.1:*"], "http://127.0.0.1:5984/db", true);
        check(
            &["http://127.0.0.1:5984"],
            "http://127.0.0.1:5985/db",
            false,
        );
        check(&["*://*:*"], "https://anything.test:1/", true);
        check(&["http://localhost:3000"], "http://LOCALHOST:3000/", true);
    }

    #[test]
    fn wildcards_grant_public_addresses_only() {
        let hosts = AllowedHosts::parse(&[
            "https://*:*".to_string(),
            "http://*.example.com".to_string(),
            "http://127.0.0.1:5984".to_string(),
        ])
        .unwrap();
        let grant = |uri: &str| hosts.grant(&uri.parse().unwrap());
        assert_eq!(grant("https://docs.rs/x"), Some(Grant::Public));
        assert_eq!(grant("http://api.example.com/"), Some(Grant::Public));
        assert_eq!(grant("http://127.0.0.1:5984/db"), Some(Grant::Listed));
        assert_eq!(grant("http://127.0.0.1:5985/db"), None);
        let chaining = AllowedHosts::parse(&["http://*.spin.internal".to_string()]).unwrap();
        assert_eq!(
            chaining.grant(&"http://ingest.spin.internal/x".parse().unwrap()),
            Some(Grant::Listed)
        );
    }

    #[test]
    fn invalid_entries_are_refused() {
        for entry in [
            "example.com",
            "ftp://x",
            "https://ex*mple.com",
            "http://h:99999",
            "https://a/b",
        ] {
            assert!(
                AllowedHosts::parse(&[entry.to_string()]).is_err(),
                "{entry} should be refused"
            );
        }
    }
}
