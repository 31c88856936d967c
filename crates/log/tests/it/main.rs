//! behalf-log's integration tests, one binary: the golden bytes and the codec's fuzzing.

mod fuzz;
mod golden;
