//! behalf-http's integration tests, one binary: the router in process over a real sled
//! store ([`common`]), request fuzzing and the OpenAPI document.

mod common;
mod fuzz;
mod openapi;
