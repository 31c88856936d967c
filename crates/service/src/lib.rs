//! # behalf-service
//!
//! Behalf's roles as libraries, independent of transport and engine:
//!
//! - [`commands::CommandService`] — authenticate, load, decide, append; the heart.
//! - [`gdap::GdapProjection`] — the directory folded from the log and kept current.
//! - [`tokens::Tokens`] — bearer tokens bound to principals, hashed at rest.
//! - [`request`] — a command request as sent (JSON or MessagePack) and its digest.
//!
//! **API boundary:** knows the [`behalf_log::EventLog`] and
//! [`behalf_log::tokens::TokenStore`] traits, never an engine; knows no HTTP.

pub mod answers;
pub mod audit;
pub mod clock;
pub mod commands;
pub mod gdap;
pub mod ids;
pub mod notifier;
pub mod queries;
pub mod request;
pub mod runner;
pub mod seal;
pub mod sla_sweep;
pub mod tokens;
pub mod views;
pub mod webhooks;

/// Internal failures of the service: nothing the caller did wrong; retry later.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Log(#[from] behalf_log::LogError),
    /// Not ready to decide (the projection is behind, the log is closing…): retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What every call of the service answers instead of its result — commands, queries
/// and tokens alike: a refusal the caller gets with its stable code (and the rule
/// behind it), or an internal failure that the edge logs once and answers as 503.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Rejected(behalf_domain::Rejection),
    #[error(transparent)]
    Failed(#[from] ServiceError),
}

impl From<behalf_domain::Rejection> for Refused {
    fn from(r: behalf_domain::Rejection) -> Self {
        Refused::Rejected(r)
    }
}

impl From<behalf_log::LogError> for Refused {
    fn from(e: behalf_log::LogError) -> Self {
        Refused::Failed(ServiceError::Log(e))
    }
}
