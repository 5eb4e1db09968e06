//! Switchyard: a local-first event router.
pub mod api;
pub mod attributes;
pub mod backend;
pub mod client;
pub mod config;
pub mod deliver;
pub mod matching;
pub mod model;
pub mod policy_test;
pub mod router;
pub mod server;
pub mod stream;
pub mod time;

pub use switchyard_filter as filter;
pub mod runtime;
