//! Errors the services answer with: a status and a JSON body `{"error": "...", "upstream": ...}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::client::UpstreamError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The service whose failure caused this one, for 502s.
    pub upstream: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            upstream: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// An upstream call failed in a way the caller cannot fix: 502 naming the upstream.
    pub fn bad_gateway(error: &UpstreamError) -> Self {
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: error.to_string(),
            upstream: Some(error.upstream()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store operation failed");
        let status = match error {
            StoreError::NotOpen => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.upstream {
            Some(upstream) => json!({"error": self.message, "upstream": upstream}),
            None => json!({"error": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

/// Parse a JSON request body, answering 400 with serde's reason (axum's own `Json` extractor
/// answers in plain text, and clients of this API expect JSON errors).
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Parse a numeric id from a path segment, answering 400 when it is not one.
pub fn parse_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} must be an integer, got {raw:?}")))
}
