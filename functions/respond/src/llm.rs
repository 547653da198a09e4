//! The chat model over OpenAI's `/v1/chat/completions`, whole or streamed.

use bytes::Bytes;
use guest::vars::{optional, variable};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use shared::ApiError;

/// An OpenAI-compatible chat server.
pub struct Llm {
    url: String,
    api_key: String,
    pub model: String,
}

/// Why the model did not answer.
pub enum Failure {
    /// It is down or failing: answer from the passages instead.
    Unavailable(String),
    /// The prompt was too long for it.
    TooLong,
}

impl Llm {
    /// The configured model, or `None` when `llm_url` is blank (answers are then extractive).
    pub async fn from_variables() -> Result<Option<Self>, ApiError> {
        let base = optional("llm_url", "").await;
        if base.is_empty() {
            return Ok(None);
        }
        let path = optional("llm_path", "/v1/chat/completions").await;
        Ok(Some(Self {
            url: format!("{}{path}", base.trim_end_matches('/')),
            api_key: variable("llm_api_key").await.unwrap_or_default(),
            model: optional("llm_model", "default").await,
        }))
    }

    fn request(&self, body: &Value) -> Result<http::Request<Full<Bytes>>, Failure> {
        let bytes = Bytes::from(body.to_string());
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&self.url)
            .header("content-type", "application/json")
            .header("content-length", bytes.len());
        if !self.api_key.is_empty() {
            request = request.header("authorization", format!("Bearer {}", self.api_key));
        }
        request
            .body(Full::new(bytes))
            .map_err(|e| Failure::Unavailable(format!("chat request: {e}")))
    }

    /// Sends `body` and returns the response once its head has arrived; a refusal is read whole.
    pub async fn send(&self, body: &Value) -> Result<spin_sdk::http::Response, Failure> {
        let response = spin_sdk::http::send(self.request(body)?)
            .await
            .map_err(|e| Failure::Unavailable(format!("chat model: {e:?}")))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let detail: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if status == 400 && detail["error"]["code"] == "context_length_exceeded" {
            return Err(Failure::TooLong);
        }
        Err(Failure::Unavailable(format!(
            "chat model answered {status}: {}",
            String::from_utf8_lossy(&text)
                .chars()
                .take(300)
                .collect::<String>()
        )))
    }

    /// A whole answer: its text and (prompt, completion) tokens.
    pub async fn complete(&self, body: &Value) -> Result<(String, (u64, u64)), Failure> {
        let response = self.send(body).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::Unavailable(format!("chat model body: {e:?}")))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Unavailable(format!("chat model answered non-JSON: {e}")))?;
        let text = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let usage = (
            answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            answer["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        );
        Ok((text, usage))
    }
}
