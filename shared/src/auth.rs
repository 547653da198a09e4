//! Authorisation decisions, made once for every function (the auth component runs them behind the
//! `edgerag:platform/auth` interface).
//!
//! There are no accounts, tokens or keys yet, so every credential is refused: the safe answer until
//! credentials can be verified.

use crate::ApiError;

/// What a request wants to do to a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Checks a project id's shape before it is used in a store key.
pub fn validate_project_id(project: &str) -> Result<(), ApiError> {
    let ok = !project.is_empty()
        && project.len() <= 64
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "a project id is 1 to 64 characters of letters, digits, '-' and '_'".into(),
        ))
    }
}

/// Decides whether `header` may perform `action` on `project`.
pub fn authorize(header: &str, project: &str, action: Action) -> Result<(), ApiError> {
    validate_project_id(project)?;
    let _ = action;
    match parse_credential(header)? {
        Credential::Bearer(_) => Err(ApiError::Unauthenticated(
            "the access token is not valid".into(),
        )),
        Credential::ApiKey(_) => Err(ApiError::Unauthenticated("the API key is not valid".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, project: &str, status: u16, needle: &str) {
        let error = authorize(header, project, Action::Search).unwrap_err();
        assert_eq!(error.status(), status, "{header:?} {project:?}");
        assert!(error.to_string().contains(needle), "{error}");
    }

    #[test]
    fn every_credential_is_refused_until_there_are_accounts() {
        check("", "p1", 401, "missing credential");
        check("Bearer", "p1", 401, "empty");
        check(
            "Basic dXNlcjpwYXNz",
            "p1",
            401,
            "unsupported authorization scheme",
        );
        check("Bearer abc.def.ghi", "p1", 401, "access token is not valid");
        check("apikey erk_123", "p1", 401, "API key is not valid");
        check("Bearer x", "", 400, "project id");
        check("Bearer x", "../other", 400, "project id");
    }

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
    }
}
