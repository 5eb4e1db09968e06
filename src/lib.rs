//! Switchyard: a local-first event router.
pub mod api;
pub mod app;
pub mod backend;
pub mod batch;
pub mod client;
pub mod config;
pub mod control;
pub mod deliver;
pub mod error;
pub mod model;
pub mod policy_test;
pub mod publish;
pub mod queue;
pub mod server;
pub mod stream;
pub mod time;
pub mod wire;

pub use switchyard_filter as filter;

/// Lowercase hex of `bytes`: content hashes, dedup ids, signing secrets and signatures.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
pub mod runtime;
