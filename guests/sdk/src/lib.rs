//! Bindings of the `switchyard:handler` world (`../../wit`) for Rust guests.
//!
//! A guest is a `cdylib` crate that implements [`Guest`] and exports it:
//!
//! ```ignore
//! use switchyard_guest::{BatchResult, Error, Event, Guest, handle_each};
//!
//! struct Handler;
//!
//! impl Guest for Handler {
//!     fn handle(event: Event) -> Result<(), Error> { Ok(()) }
//!     fn handle_batch(events: Vec<Event>) -> BatchResult { handle_each(events, Self::handle) }
//! }
//!
//! switchyard_guest::export!(Handler);
//! ```
//!
//! Built with `cargo build --release --target wasm32-wasip2`, the crate becomes a
//! component the Switchyard runtime loads. Generating the bindings once here keeps
//! every guest small to write and quick to compile.

/// The generated bindings. A module of their own: the exported macro lives at
/// the crate root, where it would clash with the module-local re-export the
/// generator also emits.
pub mod bindings {
    // Generated code: the lowering of `publish` takes each field separately.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "handler",
        pub_export_macro: true,
        default_bindings_module: "switchyard_guest::bindings",
    });
}

pub mod http;

pub use bindings::switchyard::handler::host::{config, log, publish};
pub use bindings::switchyard::handler::types::{
    Attribute, AttributeValue, BatchResult, Body, Error, Event, ItemFailure, Level, PublishOptions,
};
pub use bindings::{Guest, export};

impl Event {
    /// The body as text, if it is text.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Text(text) => Some(text),
            Body::Bytes(_) => None,
        }
    }

    /// The value of the attribute called `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|attribute| attribute.name == name)
            .map(|attribute| &attribute.value)
    }
}

/// Runs `handle` on each event in order and reports the ones that failed, for
/// guests whose batch handling is nothing more than one event after another.
pub fn handle_each(
    events: Vec<Event>,
    mut handle: impl FnMut(Event) -> Result<(), Error>,
) -> BatchResult {
    let failures = events
        .into_iter()
        .enumerate()
        .filter_map(|(index, event)| {
            handle(event).err().map(|error| ItemFailure {
                // A batch never holds more than u32::MAX events: the host bounds it.
                index: u32::try_from(index).unwrap_or(u32::MAX),
                error,
            })
        })
        .collect();
    BatchResult { failures }
}

/// Logs `message` at `level` (a shorthand for [`log`] with formatting).
#[macro_export]
macro_rules! logf {
    ($level:ident, $($arg:tt)*) => {
        $crate::log($crate::Level::$level, &::std::format!($($arg)*))
    };
}
