//! REST errors and their wire form: QuickBlox status codes and `{"errors": …}` bodies
//! (REST reference §5.3). Each variant maps to exactly one status here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::store::StoreError;

/// The text the SDK's session-expired hook looks for (REST reference §6.2).
pub const NO_SESSION: &str = "Required session does not exist";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request cannot be read (malformed form or JSON, bad path).
    #[error("{0}")]
    BadRequest(String),
    /// 401 with an array body.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 408: the body did not arrive within `api.body_read_timeout_s`.
    #[error("Request body took too long to arrive")]
    BodyTimeout,
    /// 413: the body is larger than `api.body_limit_bytes`.
    #[error("request body is too large")]
    TooLarge,
    /// 422 with `{"errors": {field: [message, …]}}`.
    #[error("validation failed")]
    Invalid(Vec<(String, String)>),
    /// 429.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the service is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// 500; the detail goes to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![(field.to_string(), message.into())])
    }

    pub fn no_session() -> ApiError {
        ApiError::Unauthorized(NO_SESSION.into())
    }

    pub fn forbidden() -> ApiError {
        ApiError::Forbidden(
            "You don't have appropriate permissions to perform this operation".into(),
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            ApiError::Invalid(fields) => {
                let mut errors = serde_json::Map::new();
                for (field, message) in fields {
                    let entry = errors.entry(field.clone()).or_insert_with(|| json!([]));
                    if let Value::Array(list) = entry {
                        list.push(Value::String(message.clone()));
                    }
                }
                json!({ "errors": errors })
            }
            ApiError::Internal(_) => json!({ "errors": ["Internal server error"] }),
            ApiError::TooLarge => json!({ "errors": ["Request body is too large"] }),
            other => json!({ "errors": [other.to_string()] }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(field) => ApiError::invalid(field, "has already been taken"),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(error: crate::chat::ChatError) -> Self {
        use crate::chat::ChatError;
        match error {
            ChatError::Invalid(field, message) => ApiError::Invalid(vec![(field, message)]),
            ChatError::NotFound(message) => ApiError::NotFound(message),
            ChatError::Forbidden(message) => ApiError::Forbidden(message),
            ChatError::Unavailable => {
                ApiError::Unavailable("The chat service is shutting down".into())
            }
            ChatError::Store(error) => error.into(),
        }
    }
}

impl From<crate::chat::query::BadParam> for ApiError {
    fn from(error: crate::chat::query::BadParam) -> Self {
        ApiError::Invalid(vec![(error.key, error.why)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        assert_eq!(
            ApiError::no_session().body(),
            json!({"errors": [NO_SESSION]})
        );
        assert_eq!(ApiError::no_session().status(), StatusCode::UNAUTHORIZED);
        let invalid = ApiError::Invalid(vec![
            ("login".into(), "is too short".into()),
            ("login".into(), "is invalid".into()),
            ("password".into(), "can't be blank".into()),
        ]);
        assert_eq!(
            invalid.body(),
            json!({"errors": {"login": ["is too short", "is invalid"], "password": ["can't be blank"]}})
        );
        assert_eq!(invalid.status().as_u16(), 422);
        assert_eq!(
            ApiError::Internal("db down".into()).body(),
            json!({"errors": ["Internal server error"]})
        );
    }
}
