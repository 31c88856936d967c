//! behalf-domain's integration tests, one binary: the rule table, the lifecycle
//! properties, the decoders' fuzzing and the hygiene of the code itself.

mod fuzz;
mod hygiene;
mod lifecycle;
mod rules;
