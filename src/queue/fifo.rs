//! FIFO rules shared by FIFO topics and FIFO queues: every message names its group, and
//! carries a deduplication id (given, or when content-based deduplication is on, the
//! SHA-256 of its body as SQS clients see it, which is the id SQS derives).

use crate::error::OpError;
use crate::hex;
use crate::model::Kind;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest FIFO group or deduplication id (SQS: 128 characters).
pub const MAX_FIFO_ID_LEN: usize = 128;

/// Checks the FIFO ids of a publish or send and derives the deduplication id.
pub fn fifo_ids(
    kind: Kind,
    name: &str,
    fifo: bool,
    content_based_dedup: bool,
    group_id: Option<String>,
    dedup_id: Option<String>,
    body: &[u8],
) -> Result<(Option<Arc<str>>, Option<String>), OpError> {
    if !fifo {
        if group_id.is_some() || dedup_id.is_some() {
            return Err(OpError::Invalid(format!(
                "group_id and dedup_id are only for FIFO resources; {kind} {name:?} is not FIFO"
            )));
        }
        return Ok((None, None));
    }
    let Some(group) = group_id else {
        return Err(OpError::Invalid(format!(
            "FIFO {kind} {name:?} needs a group_id on every message"
        )));
    };
    for (field, v) in [("group_id", Some(&group)), ("dedup_id", dedup_id.as_ref())] {
        if let Some(v) = v
            && (v.is_empty()
                || v.len() > MAX_FIFO_ID_LEN
                || !v.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(OpError::Invalid(format!(
                "{field} must be 1 to {MAX_FIFO_ID_LEN} printable ASCII characters"
            )));
        }
    }
    let dedup = match dedup_id {
        Some(d) => d,
        None if content_based_dedup => hex(&Sha256::digest(super::body_text(body).as_bytes())),
        None => {
            return Err(OpError::Invalid(format!(
                "FIFO {kind} {name:?} needs a dedup_id, or content_based_dedup enabled"
            )));
        }
    };
    Ok((Some(Arc::from(group.as_str())), Some(dedup)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_based_id_is_the_hash_of_the_body_sqs_clients_see() {
        let id = |body: &[u8]| {
            fifo_ids(
                Kind::Queue,
                "q.fifo",
                true,
                true,
                Some("g".into()),
                None,
                body,
            )
            .unwrap()
            .1
            .unwrap()
        };
        assert_eq!(id(br#""job 0""#), hex(&Sha256::digest(b"job 0")));
        assert_eq!(id(br#"{"a":1}"#), hex(&Sha256::digest(br#"{"a":1}"#)));
        let given = fifo_ids(
            Kind::Queue,
            "q.fifo",
            true,
            true,
            Some("g".into()),
            Some("d".into()),
            b"1",
        );
        assert_eq!(given.unwrap().1.as_deref(), Some("d"));
    }
}
