//! # behalf-test-support
//!
//! Fixtures the suites of several crates share, as a crate of its own (a
//! dev-dependency only; nothing ships with it): [`world`], the standard world every
//! rule case and end-to-end scenario starts from, written through `decide` itself, and
//! [`cases`], the rule table of `RULES.md` that both run.

pub mod cases;
pub mod world;
