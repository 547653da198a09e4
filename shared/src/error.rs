//! The error vocabulary: every error a client sees is one of these, rendered as
//! `{ "error": { "code": "...", "message": "..." } }` with the matching status.

use serde::Serialize;

/// An error a function answers a client with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but unusable content: an empty, undecodable or oversized document.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// Something failed on our side. The text is for logs only and never reaches the client.
    #[error("internal error")]
    Internal(String),
    /// A store or model the function depends on did not answer.
    #[error("a backing service is unavailable")]
    Unavailable(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthenticated(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unprocessable(_) => 422,
            Self::TooManyRequests { .. } => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }

    /// The stable machine-readable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unprocessable(_) => "unprocessable",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Extra headers the response must carry (`Allow`, `Retry-After`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::MethodNotAllowed { allowed, .. } => vec![("allow", allowed.clone())],
            Self::TooManyRequests {
                retry_after_secs, ..
            } => vec![("retry-after", retry_after_secs.to_string())],
            // A store or model that did not answer is usually back within seconds.
            Self::Unavailable(_) => vec![("retry-after", "5".to_string())],
            _ => Vec::new(),
        }
    }

    /// The JSON body. A 5xx carries a generic message: internal text stays in the logs.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        serde_json::to_vec(&body).expect("serialising a string map cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: ApiError, status: u16, body: serde_json::Value) {
        assert_eq!(error.status(), status);
        let got: serde_json::Value = serde_json::from_slice(&error.to_json()).unwrap();
        assert_eq!(got, body);
    }

    #[test]
    fn client_errors_carry_their_message() {
        check(
            ApiError::BadRequest("field `q` must be a string".into()),
            400,
            serde_json::json!({"error": {"code": "bad_request", "message": "field `q` must be a string"}}),
        );
        check(
            ApiError::PayloadTooLarge { limit: 10 },
            413,
            serde_json::json!({"error": {"code": "payload_too_large", "message": "request body is larger than the limit of 10 bytes"}}),
        );
    }

    #[test]
    fn server_errors_hide_internal_text() {
        check(
            ApiError::Internal("db password=hunter2 rejected".into()),
            500,
            serde_json::json!({"error": {"code": "internal", "message": "internal error"}}),
        );
        check(
            ApiError::Unavailable("connect to 127.0.0.1:5984 refused".into()),
            503,
            serde_json::json!({"error": {"code": "unavailable", "message": "a backing service is unavailable"}}),
        );
    }

    #[test]
    fn retry_after_and_allow_headers() {
        let limited = ApiError::TooManyRequests {
            message: "slow down".into(),
            retry_after_secs: 7,
        };
        assert_eq!(limited.headers(), vec![("retry-after", "7".to_string())]);
        let wrong = ApiError::MethodNotAllowed {
            method: "PUT".into(),
            allowed: "GET".into(),
        };
        assert_eq!(wrong.headers(), vec![("allow", "GET".to_string())]);
    }
}
