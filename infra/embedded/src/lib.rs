//! What every embedded default service shares: a loopback listener, a generated secret kept in the data
//! directory, credential checks, percent-decoding, and a handle to stop a running server.
//!
//! It holds no protocol of its own and knows nothing of wasmtime, manifests or any one service: the
//! service crates (docstore, vectorstore, objectstore, models) build on it and the host starts them.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// The user name and secret a client must present.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"<secret>")
            .finish()
    }
}

/// A key clients must present. Its `Debug` hides the value, so a service's config can derive `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self(key.to_string())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<secret>)")
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    /// Checks an `authorization: Basic ...` header.
    pub fn check_basic(&self, headers: &http::HeaderMap) -> bool {
        use base64::Engine as _;
        let Some(value) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.user, self.secret);
        constant_time_eq(&decoded, expected.as_bytes())
    }
}

/// Decodes `%XX` escapes in a URL path segment or query part; `None` when the result is not UTF-8.
/// A `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Reads the secret named `name` from `<data_dir>/secrets/`, creating a random one (readable by the
/// owner only) on first use.
pub fn load_or_create_secret(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let dir = data_dir.join("secrets");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().to_string()),
        Ok(_) => bail!(
            "{} is empty; delete it to generate a new secret",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}

/// A running embedded service.
#[derive(Debug)]
pub struct Embedded {
    pub name: &'static str,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Embedded {
    /// The service's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Serves `handler` on `addr` (which must be a loopback address) until stopped.
pub async fn serve<F, Fut, B>(
    name: &'static str,
    addr: SocketAddr,
    handler: F,
) -> anyhow::Result<Embedded>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !addr.ip().is_loopback() {
        bail!("the embedded {name} listens on loopback only; {addr} is not a loopback address");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {name}"))?;
    let addr = listener.local_addr()?;
    let (shutdown, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!("{name}: accept failed: {error}");
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Embedded {
        name,
        addr,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_accepts_only_the_exact_pair() {
        use base64::Engine as _;
        let credentials = Credentials {
            user: "admin".into(),
            secret: "s3cret".into(),
        };
        let check = |pair: &str| {
            let mut headers = http::HeaderMap::new();
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            credentials.check_basic(&headers)
        };
        assert!(check("admin:s3cret"));
        assert!(!check("admin:s3cre"));
        assert!(!check("admin:s3cret2"));
        assert!(!check("other:s3cret"));
        assert!(!credentials.check_basic(&http::HeaderMap::new()));
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert!(!format!("{:?}", ApiKey::from("s3cret")).contains("s3cret"));
    }

    #[test]
    fn secrets_are_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("edgerag-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create_secret(&dir, "docstore").unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_secret(&dir, "docstore").unwrap(), first);
        assert_ne!(load_or_create_secret(&dir, "other").unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("secrets/docstore"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
