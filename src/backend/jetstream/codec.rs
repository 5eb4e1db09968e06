//! Pure encodings of the JetStream backend: resource names to stream names and subjects,
//! message frames, receipts and the ack subjects JetStream hands out. No I/O here, so
//! every rule is unit-tested on its own.

use super::JsError;

/// A resource name as it appears inside stream names, subjects and KV keys. Names are
/// `[A-Za-z0-9_-]` with an optional `.fifo` suffix; `.` separates subject tokens and is
/// not allowed in stream names, so it becomes `=`, which no name contains.
pub fn escape(name: &str) -> String {
    name.replace('.', "=")
}

/// A queue name as a KV key token: delivery queues are named `topic:subscription`, and
/// KV keys cannot hold `:`; names never contain `/`, so it stands in reversibly.
pub fn key_of_name(name: &str) -> String {
    name.replace(':', "/")
}

/// The inverse of [`key_of_name`].
pub fn name_of_key(key: &str) -> String {
    key.replace('/', ":")
}

/// Checks a deployment prefix: it starts every stream name, subject and bucket name, so
/// it must be a valid token of all three.
pub fn check_prefix(prefix: &str) -> Result<(), JsError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(JsError::Invalid(format!(
            "prefix {prefix:?} must be 1 to 32 characters of letters, digits, '-' and '_'"
        )))
    }
}

/// Where a queue's messages and consumers live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    /// The JetStream stream holding the queue.
    pub stream: String,
    /// Subject prefix of messages ready to be received; the FIFO partition follows.
    pub ready: String,
    /// Subject of messages waiting out a delay.
    pub delayed: String,
}

impl QueueNames {
    pub fn new(prefix: &str, queue: &str) -> Self {
        let q = escape(queue);
        Self {
            stream: format!("{prefix}_Q_{q}"),
            ready: format!("{prefix}.q.{q}.m"),
            delayed: format!("{prefix}.q.{q}.d"),
        }
    }

    /// The subject of a ready message in `partition` (always 0 for standard queues).
    pub fn ready_subject(&self, partition: u32) -> String {
        format!("{}.{partition}", self.ready)
    }

    /// The durable consumer that hands out a partition's ready messages.
    pub fn ready_consumer(fifo: bool, partition: u32) -> String {
        if fifo {
            format!("ready-{partition}")
        } else {
            "ready".to_string()
        }
    }
}

/// The durable consumer that moves delayed messages once they are due.
pub const DELAY_CONSUMER: &str = "delay";

/// The JetStream stream of one shard of a Kinesis-style stream, and its subject. A stream
/// per shard gives every shard its own gap-free sequence numbers straight from JetStream.
pub fn shard_names(prefix: &str, stream: &str, shard: u32) -> (String, String) {
    let s = escape(stream);
    (
        format!("{prefix}_S_{s}_{shard}"),
        format!("{prefix}.s.{s}.{shard}"),
    )
}

/// The FIFO partition of a message group: a stable hash (FNV-1a), so every router puts a
/// group's messages on the same subject.
pub fn partition_of(group: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in group.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// What travels in a queue message's payload besides the body: the id, deduplication
/// id, attributes and first send time survive moves (delay, dead-letter, redrive)
/// unchanged this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub message_id: String,
    pub sent_at: u64,
    /// FIFO message group.
    pub group: Option<String>,
    /// FIFO deduplication id.
    pub dedup_id: Option<String>,
    pub attributes: Vec<u8>,
    pub payload: Vec<u8>,
}

const FRAME_V1: u8 = 1;
/// Version 1 with the deduplication id after the group; a message without one is
/// written as version 1.
const FRAME_V2: u8 = 2;

pub fn encode_frame(
    message_id: &str,
    sent_at: u64,
    group: Option<&str>,
    dedup_id: Option<&str>,
    attributes: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let group = group.unwrap_or("");
    let dedup = dedup_id.unwrap_or("");
    let mut v = Vec::with_capacity(
        1 + 8
            + 6
            + message_id.len()
            + group.len()
            + dedup.len()
            + 4
            + attributes.len()
            + payload.len(),
    );
    v.push(if dedup_id.is_some() {
        FRAME_V2
    } else {
        FRAME_V1
    });
    v.extend_from_slice(&sent_at.to_be_bytes());
    v.extend_from_slice(&(message_id.len() as u16).to_be_bytes());
    v.extend_from_slice(message_id.as_bytes());
    // Groups are never empty, so empty means none.
    v.extend_from_slice(&(group.len() as u16).to_be_bytes());
    v.extend_from_slice(group.as_bytes());
    if dedup_id.is_some() {
        v.extend_from_slice(&(dedup.len() as u16).to_be_bytes());
        v.extend_from_slice(dedup.as_bytes());
    }
    v.extend_from_slice(&(attributes.len() as u32).to_be_bytes());
    v.extend_from_slice(attributes);
    v.extend_from_slice(payload);
    v
}

pub fn decode_frame(v: &[u8]) -> Option<Frame> {
    let version = *v.first()?;
    if version != FRAME_V1 && version != FRAME_V2 {
        return None;
    }
    let str16 = |at: usize| -> Option<(&str, usize)> {
        let n = u16::from_be_bytes(v.get(at..at + 2)?.try_into().ok()?) as usize;
        Some((
            std::str::from_utf8(v.get(at + 2..at + 2 + n)?).ok()?,
            at + 2 + n,
        ))
    };
    let sent_at = u64::from_be_bytes(v.get(1..9)?.try_into().ok()?);
    let (message_id, at) = str16(9)?;
    let (group, at) = str16(at)?;
    let group = (!group.is_empty()).then(|| group.to_string());
    let (dedup_id, at) = match version {
        FRAME_V2 => {
            let (d, at) = str16(at)?;
            (Some(d.to_string()), at)
        }
        _ => (None, at),
    };
    let a = u32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?) as usize;
    let attributes = v.get(at + 4..at + 4 + a)?.to_vec();
    let payload = v.get(at + 4 + a..)?.to_vec();
    Some(Frame {
        message_id: message_id.to_string(),
        sent_at,
        group,
        dedup_id,
        attributes,
        payload,
    })
}

/// A stream record's payload: the partition key (any string, so not a header) and data.
pub fn encode_record(partition_key: &str, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + partition_key.len() + data.len());
    v.extend_from_slice(&(partition_key.len() as u16).to_be_bytes());
    v.extend_from_slice(partition_key.as_bytes());
    v.extend_from_slice(data);
    v
}

pub fn decode_record(v: &[u8]) -> Option<(String, Vec<u8>)> {
    let n = u16::from_be_bytes(v.get(..2)?.try_into().ok()?) as usize;
    let pk = std::str::from_utf8(v.get(2..2 + n)?).ok()?.to_string();
    Some((pk, v.get(2 + n..)?.to_vec()))
}

/// What JetStream's ack subject of a delivered message says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckInfo {
    pub stream: String,
    pub consumer: String,
    /// How many times the message has been delivered, this delivery included.
    pub delivered: u64,
    pub stream_seq: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (servers
/// before 2.10) or the longer form with domain and account hash (2.10 and later).
pub fn parse_ack_subject(subject: &str) -> Option<AckInfo> {
    let rest = subject.strip_prefix("$JS.ACK.")?;
    let t: Vec<&str> = rest.split('.').collect();
    if t.iter()
        .any(|s| s.is_empty() || s.contains(['*', '>', ' ', '\t', '\r', '\n']))
    {
        return None;
    }
    let (stream, consumer, nums) = match t.len() {
        7 => (t[0], t[1], &t[2..7]),
        n if n >= 9 => (t[2], t[3], &t[4..9]),
        _ => return None,
    };
    let nums: Vec<u64> = nums.iter().map(|s| s.parse().ok()).collect::<Option<_>>()?;
    Some(AckInfo {
        stream: stream.to_string(),
        consumer: consumer.to_string(),
        delivered: nums[0],
        stream_seq: nums[1],
    })
}

/// A receipt names the queue's incarnation (so a receipt outlives neither a deleted nor a
/// recreated queue) and the ack subject of the delivery it came from: any router can act
/// on it, since an ack is a publish to that subject.
pub fn encode_receipt(incarnation: u64, ack_subject: &str) -> String {
    format!("{incarnation:x}:{ack_subject}")
}

/// Checks a receipt against the queue it was presented to and returns the ack subject.
/// Anything that does not name one of this queue's consumers is refused, so a receipt can
/// never be used to publish to another subject.
pub fn parse_receipt(
    receipt: &str,
    incarnation: u64,
    names: &QueueNames,
) -> Result<(String, AckInfo), super::ReceiptError> {
    let invalid = || super::ReceiptError::Invalid(receipt.to_string());
    let (inc, subject) = receipt.split_once(':').ok_or_else(invalid)?;
    let inc = u64::from_str_radix(inc, 16).map_err(|_| invalid())?;
    let info = parse_ack_subject(subject).ok_or_else(invalid)?;
    if info.stream != names.stream
        || !(info.consumer == "ready" || info.consumer.starts_with("ready-"))
    {
        return Err(invalid());
    }
    if inc != incarnation {
        return Err(super::ReceiptError::Expired(receipt.to_string()));
    }
    Ok((subject.to_string(), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_collide_and_are_valid_tokens() {
        let a = QueueNames::new("SY", "orders.fifo");
        let b = QueueNames::new("SY", "orders_fifo");
        assert_ne!(a.stream, b.stream);
        assert!(!a.stream.contains('.'));
        assert_eq!(a.ready_subject(3), "SY.q.orders=fifo.m.3");
        assert_eq!(shard_names("SY", "clicks", 2).0, "SY_S_clicks_2");
        assert!(check_prefix("SY-1_a").is_ok());
        assert!(check_prefix("a.b").is_err());
        assert!(check_prefix("").is_err());
    }

    #[test]
    fn delivery_queue_names_make_valid_kv_keys_and_come_back() {
        let key = key_of_name("orders:email");
        assert!(!key.contains(':'));
        assert_eq!(name_of_key(&key), "orders:email");
        assert_eq!(name_of_key(&key_of_name("plain.fifo")), "plain.fifo");
    }

    #[test]
    fn frames_round_trip() {
        let v = encode_frame("m-1", 42, Some("g"), None, br#"{"a":1}"#, b"{\"x\":\"y\"}");
        assert_eq!(v[0], FRAME_V1, "what was written before dedup ids were");
        let f = decode_frame(&v).unwrap();
        assert_eq!(f.message_id, "m-1");
        assert_eq!(f.group.as_deref(), Some("g"));
        assert_eq!(f.dedup_id, None);
        let none = decode_frame(&encode_frame("m", 1, None, None, b"{}", b"1")).unwrap();
        assert_eq!(none.group, None);
        let fifo = encode_frame("m-2", 43, Some("g"), Some("d-1"), b"{}", b"2");
        let fifo = decode_frame(&fifo).unwrap();
        assert_eq!(
            (
                fifo.group.as_deref(),
                fifo.dedup_id.as_deref(),
                &fifo.payload[..]
            ),
            (Some("g"), Some("d-1"), &b"2"[..])
        );
        assert_eq!(f.sent_at, 42);
        assert_eq!(f.attributes, br#"{"a":1}"#);
        assert_eq!(f.payload, b"{\"x\":\"y\"}");
        assert!(decode_frame(&v[..5]).is_none());
        assert!(decode_frame(b"").is_none());
        let r = encode_record("pk\nwith newline", b"[1]");
        assert_eq!(
            decode_record(&r).unwrap(),
            ("pk\nwith newline".into(), b"[1]".to_vec())
        );
    }

    #[test]
    fn ack_subjects_of_both_formats_parse() {
        let v1 = parse_ack_subject("$JS.ACK.SY_Q_a.ready.3.17.20.1700000000000000000.4").unwrap();
        assert_eq!(
            (v1.stream.as_str(), v1.consumer.as_str()),
            ("SY_Q_a", "ready")
        );
        assert_eq!((v1.delivered, v1.stream_seq), (3, 17));
        let v2 =
            parse_ack_subject("$JS.ACK.dom.ACCHASH.SY_Q_a.ready-1.2.9.9.1700000000000000000.0.tok")
                .unwrap();
        assert_eq!(
            (v2.consumer.as_str(), v2.delivered, v2.stream_seq),
            ("ready-1", 2, 9)
        );
        assert!(parse_ack_subject("$JS.ACK.SY_Q_a.ready.x.17.20.1.4").is_none());
        assert!(parse_ack_subject("$JS.API.STREAM.DELETE.x").is_none());
        assert!(parse_ack_subject("$JS.ACK.a.>.1.2.3.4.5").is_none());
    }

    #[test]
    fn receipts_are_checked_against_their_queue() {
        let names = QueueNames::new("SY", "a");
        let r = encode_receipt(7, "$JS.ACK.SY_Q_a.ready.1.5.5.1700000000000000000.0");
        assert!(parse_receipt(&r, 7, &names).is_ok());
        assert!(matches!(
            parse_receipt(&r, 8, &names),
            Err(super::super::ReceiptError::Expired(_))
        ));
        let other = QueueNames::new("SY", "b");
        assert!(matches!(
            parse_receipt(&r, 7, &other),
            Err(super::super::ReceiptError::Invalid(_))
        ));
        let delay = encode_receipt(7, "$JS.ACK.SY_Q_a.delay.1.5.5.1700000000000000000.0");
        assert!(parse_receipt(&delay, 7, &names).is_err());
        assert!(parse_receipt("nonsense", 7, &names).is_err());
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(partition_of("g", 8), partition_of("g", 8));
        assert!((0..100).all(|i| partition_of(&format!("g{i}"), 8) < 8));
        assert_eq!(partition_of("anything", 1), 0);
    }
}
