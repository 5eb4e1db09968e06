//! Byte layouts of what the embedded backend stores.
//!
//! Keys are big-endian so fjall's lexicographic order is numeric order. A message is split
//! in two records: the immutable body record (written once, read on receive) and a small
//! state record (rewritten on every receive), so a receive never rewrites the body and a
//! restart rebuilds the index from the small records alone.
//!
//! A body that several messages of one store carry alike (a publish's deliveries to
//! webhooks and functions, raw deliveries to several queues) is written once, under a
//! shared key, and each message's state record names it instead of having a body record
//! of its own. Shared keys sit under queue id 0, which no queue has.

use super::index::{Entry, MsgState};
use std::num::NonZeroU64;
use std::sync::Arc;

pub fn msg_key(queue_id: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue_id.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn split_msg_key(k: &[u8]) -> Option<(u64, u64)> {
    let q = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let s = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
    Some((q, s))
}

/// Where the body of message `seq` of a queue is stored: under its own key, or the shared
/// body's.
pub fn body_key(queue_id: u64, seq: u64, e: &Entry) -> [u8; 16] {
    match e.shared {
        Some(id) => shared_key(id),
        None => msg_key(queue_id, seq),
    }
}

/// Where a body shared by several messages is stored.
pub fn shared_key(id: NonZeroU64) -> [u8; 16] {
    msg_key(SHARED_QUEUE, id.get())
}

/// The prefix of shared bodies' keys.
pub const SHARED_PREFIX: [u8; 8] = SHARED_QUEUE.to_be_bytes();

/// Queue ids start at 1.
const SHARED_QUEUE: u64 = 0;

pub fn queue_prefix(queue_id: u64) -> [u8; 8] {
    queue_id.to_be_bytes()
}

pub fn dedup_key(queue_id: u64, dedup_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + dedup_id.len());
    k.extend_from_slice(&queue_id.to_be_bytes());
    k.extend_from_slice(dedup_id.as_bytes());
    k
}

/// The immutable part of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub message_id: String,
    /// A FIFO message's deduplication id.
    pub dedup_id: Option<String>,
    /// Attributes in SNS form, as JSON text (`{}` when there are none).
    pub attributes: Vec<u8>,
    /// The payload as delivered: JSON text.
    pub payload: Vec<u8>,
}

const BODY_V1: u8 = 1;
/// Version 1 with the deduplication id after the message id; a message without one is
/// written as version 1.
const BODY_V2: u8 = 2;

pub fn encode_body(b: &Body) -> Vec<u8> {
    let dedup = b.dedup_id.as_deref().unwrap_or("");
    let mut v = Vec::with_capacity(
        1 + 2 + b.message_id.len() + 2 + dedup.len() + 4 + b.attributes.len() + b.payload.len(),
    );
    v.push(if b.dedup_id.is_some() {
        BODY_V2
    } else {
        BODY_V1
    });
    put_str16(&mut v, b.message_id.as_bytes());
    if b.dedup_id.is_some() {
        put_str16(&mut v, dedup.as_bytes());
    }
    v.extend_from_slice(&(b.attributes.len() as u32).to_be_bytes());
    v.extend_from_slice(&b.attributes);
    v.extend_from_slice(&b.payload);
    v
}

pub fn decode_body(v: &[u8]) -> Option<Body> {
    let mut r = Reader(v);
    let version = r.u8()?;
    if version != BODY_V1 && version != BODY_V2 {
        return None;
    }
    let message_id = String::from_utf8(r.str16()?.to_vec()).ok()?;
    let dedup_id = match version {
        BODY_V2 => Some(String::from_utf8(r.str16()?.to_vec()).ok()?),
        _ => None,
    };
    let n = r.u32()? as usize;
    let attributes = r.take(n)?.to_vec();
    Some(Body {
        message_id,
        dedup_id,
        attributes,
        payload: r.0.to_vec(),
    })
}

const STATE_V1: u8 = 1;
/// Version 1 followed by the id of the shared body the message carries.
const STATE_V2: u8 = 2;
/// Version 1 followed by the shared body's id (0: none) and when the message was first
/// received; a message never received is written as version 1 or 2.
const STATE_V3: u8 = 3;

pub fn encode_state(e: &Entry) -> Vec<u8> {
    let g = e.group.as_deref().unwrap_or("");
    let mut v = Vec::with_capacity(1 + 4 + 8 + 8 + 8 + 2 + g.len() + 8 + 8);
    v.push(match (e.first_received_at, e.shared) {
        (0, None) => STATE_V1,
        (0, Some(_)) => STATE_V2,
        _ => STATE_V3,
    });
    v.extend_from_slice(&e.receive_count.to_be_bytes());
    v.extend_from_slice(&e.visible_at.to_be_bytes());
    v.extend_from_slice(&e.sent_at.to_be_bytes());
    // Queue ids start at 1, so 0 means "no origin".
    v.extend_from_slice(&e.origin.map_or(0, NonZeroU64::get).to_be_bytes());
    put_str16(&mut v, g.as_bytes());
    if e.first_received_at != 0 {
        v.extend_from_slice(&e.shared.map_or(0, NonZeroU64::get).to_be_bytes());
        v.extend_from_slice(&e.first_received_at.to_be_bytes());
    } else if let Some(id) = e.shared {
        v.extend_from_slice(&id.get().to_be_bytes());
    }
    v
}

pub fn decode_state(v: &[u8]) -> Option<Entry> {
    let mut r = Reader(v);
    let version = r.u8()?;
    if !(STATE_V1..=STATE_V3).contains(&version) {
        return None;
    }
    let receive_count = r.u32()?;
    let visible_at = r.u64()?;
    let sent_at = r.u64()?;
    let origin = NonZeroU64::new(r.u64()?);
    let g = r.str16()?;
    let group = (!g.is_empty())
        .then(|| std::str::from_utf8(g).ok().map(Arc::<str>::from))
        .flatten();
    let (shared, first_received_at) = match version {
        STATE_V2 => (Some(NonZeroU64::new(r.u64()?)?), 0),
        STATE_V3 => (NonZeroU64::new(r.u64()?), r.u64()?),
        _ => (None, 0),
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(Entry {
        sent_at,
        visible_at,
        receive_count,
        state: MsgState::Visible,
        group,
        origin,
        shared,
        first_received_at,
    })
}

pub fn encode_dedup(expires_at: u64, message_id: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + message_id.len());
    v.extend_from_slice(&expires_at.to_be_bytes());
    v.extend_from_slice(message_id.as_bytes());
    v
}

pub fn decode_dedup(v: &[u8]) -> Option<(u64, String)> {
    let mut r = Reader(v);
    let at = r.u64()?;
    Some((at, String::from_utf8(r.0.to_vec()).ok()?))
}

fn put_str16(v: &mut Vec<u8>, s: &[u8]) {
    // Message ids and group ids are capped far below 64 KiB by validation.
    let n = s.len().min(u16::MAX as usize);
    v.extend_from_slice(&(n as u16).to_be_bytes());
    v.extend_from_slice(&s[..n]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
    }
    fn str16(&mut self) -> Option<&'a [u8]> {
        let n = self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_state_round_trip() {
        let b = Body {
            message_id: "m1".into(),
            dedup_id: None,
            attributes: br#"{"a":{"Type":"String","Value":"x"}}"#.to_vec(),
            payload: br#"{"hello":1}"#.to_vec(),
        };
        assert_eq!(
            encode_body(&b)[0],
            BODY_V1,
            "what was written before dedup ids were"
        );
        assert_eq!(decode_body(&encode_body(&b)), Some(b.clone()));
        let fifo = Body {
            dedup_id: Some("d-1".into()),
            ..b
        };
        assert_eq!(decode_body(&encode_body(&fifo)), Some(fifo));
        let e = Entry {
            sent_at: 5,
            visible_at: 9,
            receive_count: 3,
            state: MsgState::Visible,
            group: Some("g".into()),
            origin: NonZeroU64::new(7),
            shared: None,
            first_received_at: 0,
        };
        assert_eq!(encode_state(&e)[0], STATE_V1);
        assert_eq!(decode_state(&encode_state(&e)), Some(e.clone()));
        let shared = Entry {
            shared: NonZeroU64::new(11),
            ..e.clone()
        };
        assert_eq!(encode_state(&shared)[0], STATE_V2);
        assert_eq!(decode_state(&encode_state(&shared)), Some(shared.clone()));
        for received in [
            Entry {
                first_received_at: 8,
                ..e
            },
            Entry {
                first_received_at: 8,
                ..shared
            },
        ] {
            assert_eq!(encode_state(&received)[0], STATE_V3);
            assert_eq!(decode_state(&encode_state(&received)), Some(received));
        }
        assert_eq!(split_msg_key(&msg_key(3, 9)), Some((3, 9)));
        let id = NonZeroU64::new(4).unwrap();
        assert!(shared_key(id).starts_with(&SHARED_PREFIX));
        assert_eq!(split_msg_key(&shared_key(id)), Some((0, 4)));
    }

    #[test]
    fn truncated_records_are_refused_not_misread() {
        let b = encode_body(&Body {
            message_id: "m".into(),
            dedup_id: None,
            attributes: b"{}".to_vec(),
            payload: b"1".to_vec(),
        });
        assert!(decode_body(&b[..4]).is_none());
        assert!(decode_state(&[1, 0, 0]).is_none());
        let shared = encode_state(&Entry {
            sent_at: 1,
            visible_at: 1,
            receive_count: 0,
            state: MsgState::Visible,
            group: None,
            origin: None,
            shared: NonZeroU64::new(1),
            first_received_at: 2,
        });
        assert!(decode_state(&shared[..shared.len() - 1]).is_none());
    }
}
