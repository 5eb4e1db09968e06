//! The integration-test binary: one binary for every suite, so the crate and
//! the guests are built once.

mod guests;
mod runtime;
