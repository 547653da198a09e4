//! One outbound HTTP exchange through Spin's client, read whole: what every store adapter builds on.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request with a body of known length and reads the whole answer. The error is the
/// transport's, as text (no secret is in it: headers are never echoed).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Answer, String> {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    // Spin streams an outgoing body of unknown length chunked; a declared length keeps servers that
    // answer before reading an empty chunked body from closing the connection under us.
    let request = request
        .header("content-length", body.len())
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = spin_sdk::http::send(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Sends JSON (or nothing) and reads the answer.
pub async fn send_json<B: serde::Serialize + ?Sized>(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&B>,
) -> Result<Answer, String> {
    let mut all: Vec<(&str, &str)> = vec![("accept", "application/json")];
    all.extend_from_slice(headers);
    let bytes = match body {
        Some(value) => {
            all.push(("content-type", "application/json"));
            Bytes::from(serde_json::to_vec(value).map_err(|e| e.to_string())?)
        }
        None => Bytes::new(),
    };
    send(method, url, &all, bytes).await
}

/// A string as one URL path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Starts a step of a long job: a `POST` to `url` (the component itself, through Spin's local
/// service chaining) carrying the job's `token` in `header`, sent once the current request has been
/// answered (the task runs after the handler returns, until the step has answered).
pub fn start_step(url: String, header: &'static str, token: String) {
    spin_sdk::wit_bindgen::spawn(async move {
        if let Err(error) = send("POST", &url, &[(header, token.as_str())], Bytes::new()).await {
            eprintln!("starting the job step {url} failed: {error}");
        }
    });
}

/// The text of a request header, empty when absent or not text.
pub fn header_text(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
