//! # behalf-sled-store
//!
//! The embedded engine: Behalf's event log in a local `sled` directory. The only crate
//! that names sled.
//!
//! **Group commit.** Appends go to one writer thread, which takes every request that
//! is waiting (up to [`MAX_BATCH`]), checks idempotency and expected versions, writes
//! the whole group as one atomic `sled::Batch`, flushes once, and only then answers
//! each appender. Readers see only positions at or below the durable head.
//!
//! **Layout** (one tree, so a group is one atomic batch):
//! `L`+position → commit record; `S`+stream+`\0`+first version → position, last
//! version; `C`+command id → position, request hash; `H` → head position and hash.

pub mod baseline;
mod data_dir;
mod log;

pub use data_dir::DataDir;

pub use log::{verify_dir, OpenOptions, OpenReport, SledLog, SledSubscription, MAX_BATCH};

mod tokens;

pub use tokens::SledTokens;

mod views;

pub use views::SledViews;

mod queues;

pub use queues::SledQueues;

mod keys;
mod webhooks;

pub use keys::SledKeys;
pub use webhooks::SledWebhooks;
