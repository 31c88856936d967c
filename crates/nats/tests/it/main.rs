//! behalf-nats's integration tests, one binary, on real nats-servers: the log
//! conformance suite, idempotency past the de-duplication window, the queues.

mod conformance;
mod divergence;
mod idempotency;
mod queues;
