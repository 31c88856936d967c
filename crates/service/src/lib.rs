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

pub mod audit;
pub mod clock;
pub mod commands;
pub mod gdap;
pub mod ids;
pub mod notifier;
pub mod queries;
pub mod request;
pub mod runner;
pub mod sla_sweep;
pub mod tokens;
pub mod views;

/// Internal failures of the service. Refusals are [`behalf_domain::Rejection`]s.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Log(#[from] behalf_log::LogError),
    /// Not ready to decide (the projection is behind, the log is closing…): retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}
