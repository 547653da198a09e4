//! The component's Spin variables, as the functions read them.

use shared::ApiError;

/// A variable that must be set.
pub async fn variable(name: &str) -> Result<String, ApiError> {
    spin_sdk::variables::get(name)
        .await
        .map_err(|e| ApiError::Internal(format!("variable {name}: {e:?}")))
}

/// A variable, trimmed, or `default` when it is unset or blank.
pub async fn optional(name: &str, default: &str) -> String {
    match spin_sdk::variables::get(name).await {
        Ok(value) if !value.trim().is_empty() => value.trim().to_string(),
        _ => default.to_string(),
    }
}
