//! behalf-sled-store's integration tests, one binary: the log conformance suite,
//! corruption, SIGKILL crashes (the binary re-runs itself as the child), the model test,
//! the queues.

mod conformance;
mod corruption;
mod crash;
mod model;
mod queues;
mod snapshots;
