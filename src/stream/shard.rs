//! Shards as Kinesis has them: a partition key's MD5 is its 128-bit hash, and a new
//! stream's shards split the hash space into equal contiguous ranges.

use md5::{Digest, Md5};

/// The 128-bit hash of a partition key, as Kinesis computes it (MD5, big-endian).
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The shard owning `hash` when the key space is split into `shards` equal contiguous
/// ranges, as a new Kinesis stream is: `floor(hash * shards / 2^128)`.
pub fn shard_for_hash(hash: u128, shards: u32) -> u32 {
    debug_assert!(shards > 0);
    let n = shards as u128;
    // 128x8-bit multiply, high part: (hash * n) >> 128 without a 256-bit type.
    let hi = (hash >> 64) * n;
    let lo = (hash & u64::MAX as u128) * n;
    ((hi + (lo >> 64)) >> 64) as u32
}

/// First and last hash key of a shard's range: the smallest key with
/// `shard_for_hash(key) == shard` is `ceil(shard * 2^128 / shards)`.
pub fn shard_range(shard: u32, shards: u32) -> (u128, u128) {
    let start = |i: u32| -> u128 {
        let n = shards as u128;
        // 2^128 = q * n + r + 1
        let (q, r) = (u128::MAX / n, u128::MAX % n);
        let i = i as u128;
        i * q + (i * (r + 1)).div_ceil(n)
    };
    let end = if shard + 1 == shards {
        u128::MAX
    } else {
        start(shard + 1) - 1
    };
    (start(shard), end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_hash_space_into_contiguous_ranges() {
        for n in [1, 2, 3, 4, 7, 256] {
            let mut next = 0u128;
            for s in 0..n {
                let (a, b) = shard_range(s, n);
                assert_eq!(a, next);
                assert_eq!(shard_for_hash(a, n), s);
                assert_eq!(shard_for_hash(b, n), s);
                next = b.wrapping_add(1);
            }
            assert_eq!(shard_range(n - 1, n).1, u128::MAX);
        }
    }

    #[test]
    fn partition_keys_hash_as_kinesis_does() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        assert_eq!(shard_for_hash(hash_key(""), 2), 1);
        assert_eq!(
            shard_for_hash(hash_key("a"), 4),
            shard_for_hash(hash_key("a"), 4)
        );
    }
}
