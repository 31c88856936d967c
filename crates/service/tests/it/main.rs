//! behalf-service's integration tests, one binary: commands through the service on a
//! real sled log, request fuzzing, the GDAP snapshot, the notifier.

mod commands;
mod fuzz;
mod gdap_snapshot;
mod notifier;
