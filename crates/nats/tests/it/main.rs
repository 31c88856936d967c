//! behalf-nats's integration tests, one binary, on real nats-servers: the log
//! conformance suite, idempotency past the de-duplication window, the queues, a busy
//! connection leaving a paused server, and the batch rules a pipelined writer would rest
//! on (`fencing`).

mod conformance;
mod divergence;
mod failover;
mod fencing;
mod idempotency;
mod queues;
