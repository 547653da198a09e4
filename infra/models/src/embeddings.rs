//! `POST /v1/embeddings`: OpenAI's request shape checked, the inputs queued for the encoder, the
//! vectors answered as floats or base64.

use base64::Engine as _;
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{
    ApiError, Body, EMBEDDING_MODEL, MAX_INPUTS, Server, embed, enqueue, failed, json_response,
    unknown_model,
};

#[derive(Deserialize)]
pub(crate) struct EmbeddingRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
}

pub(crate) async fn embeddings(
    server: &Server,
    request: EmbeddingRequest,
) -> Result<Response<Body>, ApiError> {
    let Some((queue, _)) = &server.embed else {
        return Err(unknown_model(&request.model));
    };
    if request.model != EMBEDDING_MODEL {
        return Err(unknown_model(&request.model));
    }
    let texts = inputs(request.input)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                Some("encoding_format"),
                format!("encoding_format must be `float` or `base64`, not `{other}`"),
            ));
        }
    };
    if let Some(dimensions) = request.dimensions
        && dimensions != embed::DIMENSIONS as u64
    {
        return Err(ApiError::invalid(
            Some("dimensions"),
            format!(
                "{EMBEDDING_MODEL} makes {} dimensions only",
                embed::DIMENSIONS
            ),
        ));
    }
    let (reply, answer) = oneshot::channel();
    enqueue(queue, embed::Job { texts, reply })?;
    let result = answer
        .await
        .map_err(|_| failed("the embedding worker stopped"))?
        .map_err(failed)?;
    let data: Vec<Value> = result
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": EMBEDDING_MODEL,
            "usage": {
                "prompt_tokens": result.tokens,
                "total_tokens": result.tokens,
                // Inputs longer than the model's limit were cut there, as sentence-transformers does.
                "truncated_inputs": result.truncated,
            },
        }),
    ))
}

/// The texts of an embeddings `input`: a string or an array of strings, none empty.
fn inputs(input: Value) -> Result<Vec<String>, ApiError> {
    let list = match input {
        Value::String(text) => vec![Value::String(text)],
        Value::Array(list) => list,
        _ => {
            return Err(ApiError::invalid(
                Some("input"),
                "input must be a string or an array of strings",
            ));
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid(Some("input"), "input must not be empty"));
    }
    if list.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            Some("input"),
            format!(
                "at most {MAX_INPUTS} inputs per request, got {}",
                list.len()
            ),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) if text.trim().is_empty() => Err(ApiError::invalid(
                Some("input"),
                format!("input[{i}] is empty"),
            )),
            Value::String(text) => Ok(text),
            Value::Number(_) | Value::Array(_) => Err(ApiError::invalid(
                Some("input"),
                "token arrays are not accepted: their ids belong to another tokenizer; send text",
            )),
            _ => Err(ApiError::invalid(
                Some("input"),
                format!("input[{i}] must be a string"),
            )),
        })
        .collect()
}
