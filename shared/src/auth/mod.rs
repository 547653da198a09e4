//! Accounts, organisations, projects, roles, keys and tokens: every decision auth makes, written once
//! against ports (document store, mail, clock, entropy) so it runs the same in the auth component and in
//! unit tests. Nothing here does IO itself.

pub mod access;
pub mod account;
pub mod keys;
pub mod orgs;
pub mod password;
pub mod projects;
pub mod records;
pub mod secret;
pub mod service;
pub mod store;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::ApiError;

pub use access::{Principal, PrincipalKind};
pub use service::{Auth, AuthConfig};

/// What a request wants to do to a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Ingest,
    Search,
    Respond,
    Admin,
}

/// How a credential was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// Parses an `authorization` header value. Empty means the request carried no credential.
pub fn parse_credential(header: &str) -> Result<Credential<'_>, ApiError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(ApiError::Unauthenticated(
            "missing credential: send `authorization: Bearer <token>` or `authorization: ApiKey <key>`"
                .into(),
        ));
    }
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::Unauthenticated(format!(
            "the `{scheme}` credential is empty"
        )));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credential::Bearer(value))
    } else if scheme.eq_ignore_ascii_case("apikey") {
        Ok(Credential::ApiKey(value))
    } else {
        Err(ApiError::Unauthenticated(format!(
            "unsupported authorization scheme `{scheme}`; use Bearer or ApiKey"
        )))
    }
}

/// Checks a record id's shape (project, organisation, user, key) before it is used in a store key.
pub fn validate_id(id: &str, what: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "a {what} id is 1 to 64 characters of letters, digits, '-' and '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse() {
        assert_eq!(
            parse_credential("Bearer t").unwrap(),
            Credential::Bearer("t")
        );
        assert_eq!(
            parse_credential("ApiKey k ").unwrap(),
            Credential::ApiKey("k")
        );
        for (header, needle) in [
            ("", "missing credential"),
            ("Bearer", "empty"),
            ("Basic dXNlcjpwYXNz", "unsupported authorization scheme"),
        ] {
            let error = parse_credential(header).unwrap_err();
            assert_eq!(error.status(), 401);
            assert!(error.to_string().contains(needle), "{error}");
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("p1_x-Y", "project").is_ok());
        for bad in ["", "../other", "a.b", "a:b", &"x".repeat(65)] {
            assert_eq!(
                validate_id(bad, "project").unwrap_err().status(),
                400,
                "{bad}"
            );
        }
    }
}
