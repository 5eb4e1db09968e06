//! W3C trace context (`traceparent`, `tracestate`): what a publisher's trace is carried
//! as, from the publish to every delivery it causes. It travels as message attributes of
//! those names, so queue and stream consumers and functions see it with the message, a
//! webhook gets it as headers too, and a function's own publishes inherit it.

/// The attribute (and header) that names the trace and the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The attribute (and header) with vendors' trace state, carried as given.
pub const TRACESTATE: &str = "tracestate";

/// The `traceparent` and `tracestate` among a message's attributes as stored (SNS form,
/// `{"name": {"Type": …, "Value": …}}`), when it carries them; the attributes are parsed
/// only then.
pub fn trace_of(attributes: &str) -> Vec<(&'static str, String)> {
    if !attributes.contains(TRACEPARENT) {
        return Vec::new();
    }
    let attrs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(attributes).unwrap_or_default();
    [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|name| {
            let value = attrs.get(name)?.get("Value")?.as_str()?;
            Some((name, value.to_string()))
        })
        .collect()
}

/// Whether `value` is a `traceparent` the W3C recommendation accepts: version 00 is
/// exactly `00-{32 hex}-{16 hex}-{2 hex}` with neither id all zeros; a later version is
/// read by its first four fields. One that is not is ignored, as the recommendation
/// says, rather than refused.
pub fn valid_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let mut fields = value.split('-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let rest = fields.next();
    let version_ok = hex(version, 2) && version != "ff" && (version != "00" || rest.is_none());
    version_ok
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
}

/// Whether `value` may be carried as `tracestate`: at most 512 characters (the
/// recommendation's limit for what a vendor must propagate) of printable ASCII.
pub fn valid_tracestate(value: &str) -> bool {
    value.len() <= 512 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_as_the_recommendation_says() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid_traceparent(ok));
        assert!(valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later-fields"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
        assert!(valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(!valid_tracestate("a=\u{7f}"));
        assert!(!valid_tracestate(&"a".repeat(513)));
    }
}
