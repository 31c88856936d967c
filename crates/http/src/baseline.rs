//! The raw HTTP baseline of `behalf bench http`: the same serve loop as Behalf's API
//! and one route, `POST /raw`, that hands the body to `commit` and answers `201` once
//! it returns true (after the flush) — what HTTP plus a group commit cost on this
//! machine, without authentication, decoding, deciding or the log's format.

use std::future::Future;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

/// The baseline's router over `commit`.
pub fn raw_router<F, Fut>(commit: F) -> Router
where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    Router::new().route(
        "/raw",
        post(move |body: Bytes| {
            let commit = commit.clone();
            async move {
                if commit(body.to_vec()).await {
                    (StatusCode::CREATED, "{\"outcome\":\"accepted\"}")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "{\"outcome\":\"failed\"}")
                }
            }
        }),
    )
}
