//! Errors as JSON, and request bodies and query strings read with bounds
//! and errors that name the field at fault.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::MAX_BODY_BYTES;

/// An error answer: `{"error": "...", "field": "..."}` with a 4xx or 5xx
/// status. `field` names the part of the request at fault (a JSON path
/// such as `write.key`, a query parameter, `body`, or the
/// `authorization` header) when one is.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }

    /// 400, `field` is wrong.
    pub fn field(field: impl Into<String>, error: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    /// 503: a bound is reached; the agent may retry.
    pub fn busy(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)
    }

    /// 503: the node stopped.
    pub fn gone() -> ApiError {
        ApiError::busy("the node has stopped")
    }

    /// 409: a core the request needs is off in the node's configuration.
    pub fn disabled(what: &str, section: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("{what} is not enabled on this node (set `[{section}] enabled = true` in its --config)"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

/// A JSON request body of at most [`MAX_BODY_BYTES`], as `T` (whose
/// types refuse unknown fields). Errors name the field: `topic: invalid
/// type: integer `3`, expected a string`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let too_large = || ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            field: Some("body".into()),
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `bytes` as `T`, or a 400 naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field(
            "body",
            "the request body is empty; expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // `?`: a position serde could not name (inside a malformed key).
        let top = path == "." || path.is_empty() || path.contains('?');
        // An unknown field is reported at the object holding it; a syntax
        // error at the top is the body's.
        let field = match (unknown_field(&inner.to_string()), top) {
            (Some(name), true) => name,
            // Some paths end at the unknown field already, some at its
            // object (an internally tagged enum's).
            (Some(name), false) if path == name || path.ends_with(&format!(".{name}")) => path,
            (Some(name), false) => format!("{path}.{name}"),
            (None, true) => "body".into(),
            (None, false) => path,
        };
        ApiError::field(field, format!("invalid JSON body: {inner}"))
    })?;
    de.end()
        .map_err(|e| ApiError::field("body", format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// The name in serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// A query string as `T`; errors name the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(e) => {
                // "Failed to deserialize query string: NAME: what", or
                // "...: missing field `NAME`".
                let text = e.body_text();
                let detail = text.rsplit_once("query string: ").map_or(&*text, |d| d.1);
                let named = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                let field = match detail.split_once(": ") {
                    Some((head, _)) if named(head) => head,
                    _ => detail
                        .split_once("field `")
                        .and_then(|(_, rest)| rest.split('`').next())
                        .filter(|n| named(n))
                        .unwrap_or("query"),
                };
                Err(ApiError::field(field, text.clone()))
            }
        }
    }
}

/// A GossipSub topic from a request: 1 to 64 bytes of UTF-8 without
/// whitespace or control characters.
pub fn pubsub_topic(field: &str, topic: &str) -> Result<(), ApiError> {
    topic_name(field, topic, crate::proto::gossipsub::MAX_TOPIC_BYTES)
}

/// A knowledge topic from a request: 1 to 32 bytes, as for GossipSub.
pub fn knowledge_topic(field: &str, topic: &str) -> Result<(), ApiError> {
    topic_name(field, topic, 32)
}

fn topic_name(field: &str, topic: &str, max: usize) -> Result<(), ApiError> {
    if topic.is_empty() || topic.len() > max {
        return Err(ApiError::field(
            field,
            format!("a topic is 1 to {max} bytes, got {}", topic.len()),
        ));
    }
    if let Some(c) = topic.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::field(
            field,
            format!("a topic may not contain whitespace or control characters, found {c:?}"),
        ));
    }
    Ok(())
}

/// Data given as text (`data`) or as base64 (`data_base64`): exactly one.
pub fn data(
    text: Option<String>,
    b64: Option<String>,
    names: (&str, &str),
    max: usize,
) -> Result<bytes::Bytes, ApiError> {
    use base64::Engine;
    let (bytes, field) = match (text, b64) {
        (Some(t), None) => (t.into_bytes(), names.0),
        (None, Some(b)) => (
            base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| ApiError::field(names.1, format!("not base64: {e}")))?,
            names.1,
        ),
        (None, None) => {
            return Err(ApiError::field(
                names.0,
                format!("give `{}` (text) or `{}` (base64)", names.0, names.1),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                names.1,
                format!("give `{}` or `{}`, not both", names.0, names.1),
            ))
        }
    };
    if bytes.len() > max {
        return Err(ApiError::field(
            field,
            format!("{} bytes, over the limit of {max}", bytes.len()),
        ));
    }
    Ok(bytes.into())
}
