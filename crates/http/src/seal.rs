//! Opening sealed personal fields on the way out (issue 26). Every answer of this
//! router — JSON or MessagePack, every route and the NATS request/reply that
//! dispatches into it — passes here: a sealed string (`enc1.…`) becomes its clear
//! value, or `"[erased]"` once its key is deleted. Views, queues and the log hold only
//! the sealed form; nothing else opens it (the CLI's audit commands open with the
//! same keyring).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use behalf_service::seal::{Keyring, SEALED};

use crate::respond::unavailable;

/// Whether `bytes` hold a sealed string at all (most answers do not).
fn holds_sealed(bytes: &[u8]) -> bool {
    bytes.windows(SEALED.len()).any(|w| w == SEALED.as_bytes())
}

pub(crate) async fn open_sealed(State(keyring): State<Arc<Keyring>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let ctype = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let msgpack = ctype.starts_with("application/msgpack");
    if !msgpack && !ctype.starts_with("application/json") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return unavailable(&behalf_service::ServiceError::from(behalf_log::LogError::Storage(
            "an answer could not be read back to open it".into(),
        )));
    };
    if !holds_sealed(&bytes) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let value: Result<serde_json::Value, String> = if msgpack {
        rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let Ok(mut value) = value else { return Response::from_parts(parts, Body::from(bytes)) };
    if let Err(e) = keyring.open_json(&mut value) {
        return unavailable(&behalf_service::ServiceError::from(e));
    }
    let out = if msgpack {
        rmp_serde::to_vec_named(&value).unwrap_or_default()
    } else {
        serde_json::to_vec(&value).unwrap_or_default()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}
