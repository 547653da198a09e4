//! A transport-neutral response: what a handler decided to answer, before the function turns it into
//! its runtime's response type.

use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use crate::ApiError;

/// Status, headers and body of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer with the given status.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self {
                status,
                headers: vec![("content-type", "application/json".to_string())],
                body,
            },
            Err(error) => Self::error(&ApiError::Internal(error.to_string())),
        }
    }

    /// The JSON error body for `error`, with its status and extra headers.
    pub fn error(error: &ApiError) -> Self {
        let mut headers = vec![("content-type", "application/json".to_string())];
        headers.extend(error.headers());
        Self {
            status: error.status(),
            headers,
            body: error.to_json(),
        }
    }

    /// The answer as an `http` response, ready for any runtime that speaks the `http` crate's types.
    pub fn into_http(self) -> http::Response<Full<Bytes>> {
        // A declared length lets the server send head and body in one write instead of chunks.
        let length = http::HeaderValue::from(self.body.len());
        let mut response = http::Response::new(Full::new(Bytes::from(self.body)));
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, length);
        *response.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }

    /// The answer to a browser's CORS preflight from `origin`. It is public (browsers send no credential
    /// with it) and grants nothing by itself: the real request is still checked, widget keys against their
    /// listed origins.
    pub fn preflight(origin: &str) -> Self {
        Self {
            status: 204,
            headers: vec![
                ("access-control-allow-origin", origin.to_string()),
                ("access-control-allow-methods", "GET, POST, OPTIONS".into()),
                (
                    "access-control-allow-headers",
                    "authorization, content-type".into(),
                ),
                ("access-control-max-age", "600".into()),
                ("vary", "origin".into()),
            ],
            body: Vec::new(),
        }
    }

    /// Lets a page on `origin` read this answer.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.headers
            .push(("access-control-allow-origin", origin.to_string()));
        self.headers.push(("vary", "origin".into()));
        self
    }

    /// `Ok` as a 200 JSON answer, `Err` as its error answer.
    pub fn from_result(result: Result<impl Serialize, ApiError>) -> Self {
        match result {
            Ok(value) => Self::json(200, &value),
            Err(error) => Self::error(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_has_status_type_and_extra_headers() {
        let reply = Reply::error(&ApiError::TooManyRequests {
            message: "slow down".into(),
            retry_after_secs: 3,
        });
        assert_eq!(reply.status, 429);
        assert_eq!(
            reply.headers,
            vec![
                ("content-type", "application/json".to_string()),
                ("retry-after", "3".to_string())
            ]
        );
    }
}
