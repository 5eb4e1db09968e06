//! Switchyard: a local-first event router.
pub mod backend;
pub mod matching;
pub mod model;

pub use switchyard_filter as filter;
