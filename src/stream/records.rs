//! Records: appended to the shard their partition key hashes to, read back a page at a
//! time from any position within retention.

use super::{Streams, hash_key, parse_shard_id, shard_for_hash, shard_id, shard_range};
use crate::backend::{Delivery, NewRecord, Stored, StoredRecord, Stream};
use crate::error::OpError;
use crate::model::{Kind, MAX_PARTITION_KEY_LEN, MAX_RECORD_BYTES, MAX_RECORDS_PER_PUT};
use crate::wire::{Position, PutRecord};

/// Most records one shard read or one group poll returns (Kinesis GetRecords: 10,000).
pub const MAX_READ_RECORDS: usize = 10_000;

/// A record to append: bytes of any kind.
#[derive(Debug, Clone)]
pub struct Record {
    /// Picks the shard by its MD5.
    pub partition_key: String,
    /// A decimal 128-bit hash key that picks the shard instead.
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// A shard as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardState {
    pub shard: u32,
    /// First and last 128-bit hash key it owns.
    pub hash_keys: (u128, u128),
    /// First sequence it holds; `last` + 1 when it is empty.
    pub first: u64,
    /// Last sequence it was given (0 before the first record).
    pub last: u64,
}

/// A page of one shard.
pub struct ShardPage {
    pub records: Vec<StoredRecord>,
    /// Position to read the next page from.
    pub next: Position,
}

impl Streams {
    pub(super) fn shard(&self, h: &Stream, shard_id: &str) -> Result<u32, OpError> {
        parse_shard_id(shard_id)
            .filter(|&s| s < h.shard_count())
            .ok_or_else(|| OpError::NotFound {
                kind: Kind::Shard,
                name: format!("{shard_id} of stream {}", h.name()),
            })
    }

    /// Appends records as `/v1` gives them (JSON or base64 data); see [`Self::put`].
    pub async fn put_records(
        &self,
        name: &str,
        records: Vec<PutRecord>,
    ) -> Result<Vec<(u32, u64)>, OpError> {
        let records = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let partition_key = r.partition_key.clone();
                let explicit_hash_key = r.explicit_hash_key.clone();
                let data = r
                    .into_bytes()
                    .map_err(|e| OpError::Invalid(format!("records[{i}]: {e}")))?;
                Ok(Record {
                    partition_key,
                    explicit_hash_key,
                    data,
                })
            })
            .collect::<Result<Vec<_>, OpError>>()?;
        self.put(name, records).await
    }

    /// Appends records; each lands on the shard its partition key hashes to, and all are
    /// durable when this returns. Returns (shard, sequence) per record. A record that is
    /// not valid refuses the whole put, so a put is stored whole or not at all.
    pub async fn put(&self, name: &str, records: Vec<Record>) -> Result<Vec<(u32, u64)>, OpError> {
        let h = self.stream(name)?;
        if records.is_empty() || records.len() > MAX_RECORDS_PER_PUT {
            return Err(OpError::Invalid(format!(
                "a put holds 1 to {} records, got {}",
                MAX_RECORDS_PER_PUT,
                records.len()
            )));
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let pk_len = r.partition_key.chars().count();
            if pk_len == 0 || pk_len > MAX_PARTITION_KEY_LEN {
                return Err(OpError::Invalid(format!(
                    "records[{i}].partition_key must be 1 to {} characters",
                    MAX_PARTITION_KEY_LEN
                )));
            }
            let size = r.data.len() + r.partition_key.len();
            if size > MAX_RECORD_BYTES {
                return Err(OpError::TooLarge {
                    kind: Kind::Stream,
                    name: format!("{name} (records[{i}])"),
                    size,
                    max: MAX_RECORD_BYTES,
                });
            }
            let hash = match &r.explicit_hash_key {
                Some(k) => k.parse::<u128>().map_err(|_| {
                    OpError::Invalid(format!(
                        "records[{i}].explicit_hash_key {k:?} is not a decimal number from 0 to 2^128-1"
                    ))
                })?,
                None => hash_key(&r.partition_key),
            };
            let shard = shard_for_hash(hash, h.shard_count());
            deliveries.push(Delivery::Stream(
                h.clone(),
                shard,
                NewRecord {
                    partition_key: r.partition_key,
                    explicit_hash_key: r.explicit_hash_key.and(Some(hash)),
                    data: r.data,
                },
            ));
        }
        let stored = self.backend.store(deliveries).await?;
        let meter = self.telemetry.streams.get(h.name());
        meter.records_put.add(stored.len() as u64);
        Ok(stored
            .into_iter()
            .filter_map(|s| match s {
                Stored::Stream { shard, sequence } => Some((shard, sequence)),
                Stored::Queue(_) => None,
            })
            .collect())
    }

    /// Resolves a position to the first sequence to read, refusing positions past the
    /// shard's end or before its trim horizon rather than answering an empty page.
    async fn start_of(&self, h: &Stream, shard: u32, pos: Position) -> Result<u64, OpError> {
        let (first, end) = self.backend.bounds(h, shard).await?;
        let sid = shard_id(shard);
        let beyond = |s: u64| {
            OpError::Invalid(format!(
                "sequence {s} is beyond the end of {sid} (its last sequence is {end})"
            ))
        };
        let expired = |s: u64| {
            OpError::Expired(format!(
                "sequence {s} of {sid} has passed retention; the oldest available is {first} (read from trim_horizon)"
            ))
        };
        match pos {
            Position::TrimHorizon => Ok(first),
            Position::Latest => Ok(end + 1),
            Position::At(s) => {
                if s == 0 || s > end {
                    Err(beyond(s))
                } else if s < first {
                    Err(expired(s))
                } else {
                    Ok(s)
                }
            }
            Position::After(s) => {
                if s > end {
                    Err(beyond(s))
                } else if s + 1 < first {
                    Err(expired(s))
                } else {
                    Ok(s + 1)
                }
            }
            Position::AtTimestamp(ts) => Ok(self.backend.sequence_at(h, shard, ts).await?),
        }
    }

    /// Each shard of a stream: its hash-key range and the sequences it holds.
    pub async fn shards(&self, name: &str) -> Result<Vec<ShardState>, OpError> {
        let h = self.stream(name)?;
        let n = h.shard_count();
        let mut shards = Vec::with_capacity(n as usize);
        for shard in 0..n {
            let (first, last) = self.backend.bounds(&h, shard).await?;
            shards.push(ShardState {
                shard,
                hash_keys: shard_range(shard, n),
                first,
                last,
            });
        }
        Ok(shards)
    }

    /// The first sequence a read from `pos` of `shard` returns (one past the last record
    /// for [`Position::Latest`]), refusing positions past the shard's end or before its
    /// trim horizon ([`OpError::Expired`]).
    pub async fn start(&self, name: &str, shard: u32, pos: Position) -> Result<u64, OpError> {
        let h = self.stream(name)?;
        self.check_shard(&h, shard)?;
        self.start_of(&h, shard, pos).await
    }

    /// Reads up to `limit` records of `shard` from sequence `start` on, or from the trim
    /// horizon when `start` has passed retention. Returns them with the shard's last
    /// sequence, so a reader knows how far behind it is.
    pub async fn read_from(
        &self,
        name: &str,
        shard: u32,
        start: u64,
        limit: usize,
    ) -> Result<(Vec<StoredRecord>, u64), OpError> {
        let h = self.stream(name)?;
        self.check_shard(&h, shard)?;
        let (first, last) = self.backend.bounds(&h, shard).await?;
        let records = self
            .backend
            .read_shard(
                &h,
                shard,
                start.max(first),
                limit.clamp(1, MAX_READ_RECORDS),
            )
            .await?;
        Ok((records, last))
    }

    fn check_shard(&self, h: &Stream, shard: u32) -> Result<(), OpError> {
        if shard < h.shard_count() {
            Ok(())
        } else {
            Err(OpError::NotFound {
                kind: Kind::Shard,
                name: format!("{} of stream {}", shard_id(shard), h.name()),
            })
        }
    }

    /// Reads one page of a shard.
    pub async fn read_shard(
        &self,
        name: &str,
        shard_id: &str,
        from: &str,
        limit: Option<usize>,
    ) -> Result<ShardPage, OpError> {
        let h = self.stream(name)?;
        let shard = self.shard(&h, shard_id)?;
        let pos: Position = from.parse().map_err(OpError::Invalid)?;
        let limit = limit.unwrap_or(1000);
        if !(1..=MAX_READ_RECORDS).contains(&limit) {
            return Err(OpError::Invalid(format!(
                "limit must be between 1 and {MAX_READ_RECORDS}, got {limit}"
            )));
        }
        let start = self.start_of(&h, shard, pos).await?;
        let records = self.backend.read_shard(&h, shard, start, limit).await?;
        let next = match records.last() {
            Some(r) => Position::After(r.sequence),
            None => Position::After(start - 1),
        };
        Ok(ShardPage { records, next })
    }
}
