//! Switchyard: a local-first event router.
pub use switchyard_filter as filter;
pub mod runtime;
