//! The end-to-end suites of `behalf`, one test binary (rust-analyzer's layout: one link
//! instead of seventeen, the suites sharing one process): the real binary as a process,
//! over HTTP(S) and NATS, on both engines. The shared helpers are [`support`]; a
//! scenario that must hold on both engines is written once and expanded for each by
//! [`on_both_engines!`]. The NATS nemesis is a binary of its own (`tests/cluster.rs`):
//! it measures pauses and must not share the cores with these suites.

#[macro_use]
mod support;

mod audit;
mod bad_input;
mod client;
mod console;
mod console_api;
mod deploy;
mod docs;
mod e2e;
mod erasure;
mod generated_client;
mod hostile;
mod https;
mod import;
mod nats_permissions;
mod notifier;
mod otlp;
mod process;
mod prometheus;
mod queries;
mod roles;
mod rule_table;
mod schemathesis;
mod secure_nats;
mod soak;
mod webhooks;
