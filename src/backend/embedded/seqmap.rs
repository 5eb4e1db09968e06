//! Compact map and set keyed by message sequence number, for the queue index. A queue hands
//! out sequences in increasing order and consumes them mostly from the front, which leaves a
//! per-key B-tree half full and costing about twice the values it holds. Here keys are
//! grouped into aligned chunks behind a presence bitmap, with only the present values
//! stored, so a backlog costs little more than its values and a sparse one pays for the keys
//! it has rather than for the holes between them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

// 64 keys per chunk, so the presence bitmap is one word and finding a value is one
// popcount. As absent keys take no slot, the chunk size does not set the sparse worst case:
// a key alone in its chunk costs its value plus roughly 100 bytes of chunk and tree
// whatever the size. A bigger chunk would only shave the dense overhead (about 100 bytes
// per chunk, under 2 bytes a key at 64) while making inserts and removals in the middle
// shift more values.
const SHIFT: u32 = 6;

/// Splits a key into its chunk number and its bit in that chunk.
fn split(key: u64) -> (u64, u32) {
    (key >> SHIFT, (key & ((1 << SHIFT) - 1)) as u32)
}

/// A map from sequence numbers to values, cheapest when keys arrive in increasing order
/// and leave from the front.
pub struct SeqMap<V> {
    /// Never holds an empty chunk, so the first and last chunks hold the extreme keys.
    chunks: BTreeMap<u64, Chunk<V>>,
    len: usize,
}

struct Chunk<V> {
    /// Bit i set: key `chunk << SHIFT | i` is present, its value at the rank of bit i.
    bits: u64,
    /// The present values in key order. A deque, so that removing the oldest (what a queue
    /// mostly does) moves nothing.
    vals: VecDeque<V>,
}

impl<V> Chunk<V> {
    /// Where the value of bit `i` sits (or would sit) in `vals`.
    fn rank(&self, i: u32) -> usize {
        (self.bits & ((1u64 << i) - 1)).count_ones() as usize
    }

    fn has(&self, i: u32) -> bool {
        self.bits & (1 << i) != 0
    }

    /// Gives memory back once most of a chunk is gone, so keys left behind in a drained
    /// backlog (a straggler in flight, a long delay) do not each keep a full chunk's worth.
    /// Halving only at a quarter keeps a chunk that refills from reallocating every time.
    fn shrink(&mut self) {
        let len = self.vals.len();
        if len * 4 <= self.vals.capacity() {
            self.vals.shrink_to(len * 2);
        }
    }
}

impl<V> Default for SeqMap<V> {
    fn default() -> Self {
        Self {
            chunks: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<V> SeqMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: u64) -> Option<&V> {
        let (c, i) = split(key);
        let ch = self.chunks.get(&c)?;
        ch.has(i).then(|| &ch.vals[ch.rank(i)])
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let (c, i) = split(key);
        let ch = self.chunks.get_mut(&c)?;
        if !ch.has(i) {
            return None;
        }
        let r = ch.rank(i);
        Some(&mut ch.vals[r])
    }

    /// Stores `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let (c, i) = split(key);
        let ch = self.chunks.entry(c).or_insert_with(|| Chunk {
            bits: 0,
            // Room for one: a chunk that stays sparse then holds no spare slots, and one
            // that fills grows by doubling as usual.
            vals: VecDeque::with_capacity(1),
        });
        let r = ch.rank(i);
        if ch.has(i) {
            return Some(std::mem::replace(&mut ch.vals[r], value));
        }
        ch.bits |= 1 << i;
        ch.vals.insert(r, value);
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: u64) -> Option<V> {
        let (c, i) = split(key);
        let ch = self.chunks.get_mut(&c)?;
        if !ch.has(i) {
            return None;
        }
        let value = ch.vals.remove(ch.rank(i)).expect("one value per bit");
        ch.bits &= !(1 << i);
        self.len -= 1;
        if ch.bits == 0 {
            self.chunks.remove(&c);
        } else {
            ch.shrink();
        }
        Some(value)
    }

    /// The smallest key and its value.
    pub fn first_key_value(&self) -> Option<(u64, &V)> {
        let (&c, ch) = self.chunks.first_key_value()?;
        let key = (c << SHIFT) | u64::from(ch.bits.trailing_zeros());
        Some((key, ch.vals.front().expect("chunks are never empty")))
    }

    #[cfg(test)]
    pub fn last_key(&self) -> Option<u64> {
        let (&c, ch) = self.chunks.last_key_value()?;
        Some((c << SHIFT) | u64::from(63 - ch.bits.leading_zeros()))
    }

    /// Every key, ascending.
    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flat_map(|(&c, ch)| Bits {
            base: c << SHIFT,
            bits: ch.bits,
        })
    }

    /// Every key and its value, ascending by key.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.chunks.iter().flat_map(|(&c, ch)| {
            Bits {
                base: c << SHIFT,
                bits: ch.bits,
            }
            .zip(ch.vals.iter())
        })
    }
}

impl<V: fmt::Debug> fmt::Debug for SeqMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

// 256 keys (four words) per chunk: a dense set then costs well under a byte a key including
// the tree, and a key alone in its chunk about 80 bytes. Smaller chunks would cost more per
// key when dense for little gain when sparse; larger ones would make a lone key dearer and
// `pop_first` scan more zero words.
const SET_WORDS: usize = 4;
const SET_SHIFT: u32 = 8;

/// A set of sequence numbers as a bitmap, in chunks that exist only while they hold a key.
#[derive(Default)]
pub struct SeqSet {
    chunks: BTreeMap<u64, [u64; SET_WORDS]>,
}

/// Splits a key into its chunk number, its word in the chunk and its bit in that word.
fn split_set(key: u64) -> (u64, usize, u32) {
    let (c, bit) = (key >> SET_SHIFT, key & ((1 << SET_SHIFT) - 1));
    (c, (bit / 64) as usize, (bit % 64) as u32)
}

impl SeqSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`; `false` when it was already there.
    pub fn insert(&mut self, key: u64) -> bool {
        let (c, w, b) = split_set(key);
        let word = &mut self.chunks.entry(c).or_insert([0; SET_WORDS])[w];
        let absent = *word & (1 << b) == 0;
        *word |= 1 << b;
        absent
    }

    /// Removes `key`; `false` when it was not there.
    pub fn remove(&mut self, key: u64) -> bool {
        let (c, w, b) = split_set(key);
        let Some(words) = self.chunks.get_mut(&c) else {
            return false;
        };
        let present = words[w] & (1 << b) != 0;
        words[w] &= !(1 << b);
        if words.iter().all(|&x| x == 0) {
            self.chunks.remove(&c);
        }
        present
    }

    /// The smallest key.
    pub fn first(&self) -> Option<u64> {
        let (&c, words) = self.chunks.first_key_value()?;
        let w = words
            .iter()
            .position(|&x| x != 0)
            .expect("chunks are never empty");
        Some((c << SET_SHIFT) | (w as u64 * 64) | u64::from(words[w].trailing_zeros()))
    }

    /// Removes and returns the smallest key.
    pub fn pop_first(&mut self) -> Option<u64> {
        let mut first = self.chunks.first_entry()?;
        let c = *first.key();
        let words = first.get_mut();
        let w = words
            .iter()
            .position(|&x| x != 0)
            .expect("chunks are never empty");
        let b = words[w].trailing_zeros();
        words[w] &= words[w] - 1;
        if words.iter().all(|&x| x == 0) {
            first.remove();
        }
        Some((c << SET_SHIFT) | (w as u64 * 64) | u64::from(b))
    }

    /// Every key, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flat_map(|(&c, words)| {
            words.iter().enumerate().flat_map(move |(w, &bits)| Bits {
                base: (c << SET_SHIFT) | (w as u64 * 64),
                bits,
            })
        })
    }
}

impl fmt::Debug for SeqSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The keys of one bitmap word, ascending.
struct Bits {
    base: u64,
    bits: u64,
}

impl Iterator for Bits {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.bits == 0 {
            return None;
        }
        let i = self.bits.trailing_zeros();
        self.bits &= self.bits - 1;
        Some(self.base | u64::from(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bits.count_ones() as usize;
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    // The index has no use for these; the tests compare them against the model.
    impl SeqSet {
        fn contains(&self, key: u64) -> bool {
            let (c, w, b) = split_set(key);
            self.chunks.get(&c).is_some_and(|ws| ws[w] & (1 << b) != 0)
        }

        fn len(&self) -> usize {
            self.chunks
                .values()
                .flatten()
                .map(|w| w.count_ones() as usize)
                .sum()
        }
    }

    /// The bookkeeping the methods rely on.
    fn check_map_invariants<V>(m: &SeqMap<V>) {
        let mut n = 0;
        for ch in m.chunks.values() {
            assert_ne!(ch.bits, 0, "an empty chunk was kept");
            assert_eq!(ch.vals.len(), ch.bits.count_ones() as usize);
            n += ch.vals.len();
        }
        assert_eq!(n, m.len());
    }

    fn check_set_invariants(s: &SeqSet) {
        for words in s.chunks.values() {
            assert!(words.iter().any(|&w| w != 0), "an empty chunk was kept");
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut m = SeqMap::new();
        assert!(m.is_empty());
        assert_eq!(m.insert(5, "a"), None);
        assert_eq!(m.insert(5, "b"), Some("a"));
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(5), Some(&"b"));
        assert_eq!(m.get(4), None);
        assert_eq!(m.get(69), None);
        *m.get_mut(5).unwrap() = "c";
        assert_eq!(m.get_mut(6), None);
        assert_eq!(m.remove(6), None);
        assert_eq!(m.remove(5), Some("c"));
        assert_eq!(m.remove(5), None);
        assert!(m.is_empty());
        assert!(m.chunks.is_empty());
        check_map_invariants(&m);
    }

    #[test]
    fn keys_are_ascending_across_chunks_and_extremes() {
        let keys = [u64::MAX, 64, 0, 1 << 40, 63, 128, u64::MAX - 1, 127, 1];
        let mut m = SeqMap::new();
        for k in keys {
            m.insert(k, k.wrapping_mul(3));
        }
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        assert_eq!(m.keys().collect::<Vec<_>>(), sorted);
        let pairs: Vec<(u64, u64)> = m.iter().map(|(k, v)| (k, *v)).collect();
        let expected: Vec<(u64, u64)> = sorted.iter().map(|&k| (k, k.wrapping_mul(3))).collect();
        assert_eq!(pairs, expected);
        assert_eq!(m.first_key_value(), Some((0, &0)));
        assert_eq!(m.last_key(), Some(u64::MAX));
        assert_eq!(m.remove(u64::MAX), Some(u64::MAX.wrapping_mul(3)));
        assert_eq!(m.last_key(), Some(u64::MAX - 1));
        check_map_invariants(&m);
    }

    #[test]
    fn draining_a_queue_from_the_front_frees_every_chunk() {
        let mut m = SeqMap::new();
        for s in 1..=1000u64 {
            m.insert(s, s);
        }
        assert_eq!(m.chunks.len(), 1000 / 64 + 1);
        let mut expect = 1;
        while let Some((k, &v)) = m.first_key_value() {
            assert_eq!((k, v), (expect, expect));
            assert_eq!(m.remove(k), Some(v));
            expect += 1;
        }
        assert_eq!(expect, 1001);
        assert!(m.chunks.is_empty());
        assert_eq!(m.first_key_value(), None);
        assert_eq!(m.last_key(), None);
    }

    #[test]
    fn a_full_chunk_has_no_spare_slots() {
        let mut m = SeqMap::new();
        for s in 0..64 * 100 {
            m.insert(s, [0u8; 56]);
        }
        assert!(m.chunks.values().all(|ch| ch.vals.capacity() == 64));
    }

    #[test]
    fn sparse_keys_keep_no_more_than_two_slots() {
        // Inserted sparse.
        let mut m = SeqMap::new();
        for s in (0..64 * 100).step_by(64) {
            m.insert(s, s);
        }
        assert!(m.chunks.values().all(|ch| ch.vals.capacity() == 1));
        // Left behind by a drained backlog.
        let mut m = SeqMap::new();
        for s in 0..64 * 100 {
            m.insert(s, s);
        }
        for s in 0..64 * 100 {
            if s % 64 != 17 {
                m.remove(s);
            }
        }
        assert_eq!(m.len(), 100);
        assert!(m.chunks.values().all(|ch| ch.vals.capacity() <= 2));
        assert_eq!(m.get(64 * 3 + 17), Some(&(64 * 3 + 17)));
        check_map_invariants(&m);
    }

    #[test]
    fn set_pops_in_order_and_frees_chunks() {
        let mut s = SeqSet::new();
        for k in [300, 5, u64::MAX, 0, 256, 255, 5] {
            s.insert(k);
        }
        assert!(!s.insert(300));
        assert!(s.contains(255) && !s.contains(254));
        assert_eq!(s.len(), 6);
        assert!(s.remove(256));
        assert!(!s.remove(256));
        assert!(!s.remove(1 << 50));
        let mut popped = Vec::new();
        while let Some(k) = s.pop_first() {
            popped.push(k);
            check_set_invariants(&s);
        }
        assert_eq!(popped, [0, 5, 255, 300, u64::MAX]);
        assert!(s.chunks.is_empty());
        assert_eq!(format!("{s:?}"), "{}");
    }

    #[derive(Debug, Clone)]
    enum MapOp {
        Insert(u64, u32),
        Remove(u64),
        GetMut(u64, u32),
        /// What a queue does: take the oldest.
        PopFirst,
    }

    #[derive(Debug, Clone, Copy)]
    enum SetOp {
        Insert(u64),
        Remove(u64),
        PopFirst,
    }

    /// Keys that collide, share chunks, straddle chunk boundaries, fill a run the way a
    /// queue's arrivals do, and reach the extremes.
    fn key() -> impl Strategy<Value = u64> {
        prop_oneof![
            3 => 0..700u64,
            3 => 10_000..10_300u64,
            1 => (u64::MAX - 300)..=u64::MAX,
            1 => any::<u64>(),
        ]
    }

    fn map_op() -> impl Strategy<Value = MapOp> {
        prop_oneof![
            4 => (key(), any::<u32>()).prop_map(|(k, v)| MapOp::Insert(k, v)),
            2 => key().prop_map(MapOp::Remove),
            1 => (key(), any::<u32>()).prop_map(|(k, v)| MapOp::GetMut(k, v)),
            3 => Just(MapOp::PopFirst),
        ]
    }

    fn set_op() -> impl Strategy<Value = SetOp> {
        prop_oneof![
            5 => key().prop_map(SetOp::Insert),
            2 => key().prop_map(SetOp::Remove),
            3 => Just(SetOp::PopFirst),
        ]
    }

    /// Applies `ops` to a `SeqMap` and to a `BTreeMap`, comparing every answer and then
    /// the contents.
    fn run_map(ops: &[MapOp]) {
        let mut m = SeqMap::new();
        let mut model = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let probe = match *op {
                MapOp::Insert(k, v) => {
                    assert_eq!(m.insert(k, v), model.insert(k, v), "op {i}: {op:?}");
                    k
                }
                MapOp::Remove(k) => {
                    assert_eq!(m.remove(k), model.remove(&k), "op {i}: {op:?}");
                    k
                }
                MapOp::GetMut(k, v) => {
                    let (a, b) = (m.get_mut(k), model.get_mut(&k));
                    assert_eq!(a, b, "op {i}: {op:?}");
                    if let (Some(a), Some(b)) = (a, b) {
                        (*a, *b) = (v, v);
                    }
                    k
                }
                MapOp::PopFirst => {
                    let first = m.first_key_value().map(|(k, v)| (k, *v));
                    assert_eq!(first, model.first_key_value().map(|(k, v)| (*k, *v)));
                    if let Some((k, _)) = first {
                        assert_eq!(m.remove(k), model.remove(&k), "op {i}: {op:?}");
                    }
                    first.map_or(0, |(k, _)| k)
                }
            };
            for k in [probe, probe.wrapping_add(1), probe.wrapping_sub(1)] {
                assert_eq!(m.get(k), model.get(&k), "op {i}: {op:?}, get {k}");
            }
            assert_eq!(m.len(), model.len(), "op {i}: {op:?}");
            assert_eq!(m.is_empty(), model.is_empty(), "op {i}: {op:?}");
            assert_eq!(
                m.first_key_value(),
                model.first_key_value().map(|(k, v)| (*k, v)),
                "op {i}: {op:?}"
            );
            assert_eq!(
                m.last_key(),
                model.keys().next_back().copied(),
                "op {i}: {op:?}"
            );
        }
        check_map_invariants(&m);
        assert!(m.keys().eq(model.keys().copied()));
        assert!(m.iter().eq(model.iter().map(|(k, v)| (*k, v))));
        for (k, v) in &model {
            assert_eq!(m.get(*k), Some(v));
        }
    }

    /// Applies `ops` to a `SeqSet` and to a `BTreeSet`, comparing every answer and then the
    /// contents.
    fn run_set(ops: &[SetOp]) {
        let mut s = SeqSet::new();
        let mut model = BTreeSet::new();
        for (i, op) in ops.iter().enumerate() {
            let probe = match *op {
                SetOp::Insert(k) => {
                    assert_eq!(s.insert(k), model.insert(k), "op {i}: {op:?}");
                    k
                }
                SetOp::Remove(k) => {
                    assert_eq!(s.remove(k), model.remove(&k), "op {i}: {op:?}");
                    k
                }
                SetOp::PopFirst => {
                    let popped = s.pop_first();
                    assert_eq!(popped, model.pop_first(), "op {i}: {op:?}");
                    popped.unwrap_or(0)
                }
            };
            for k in [probe, probe.wrapping_add(1), probe.wrapping_sub(1)] {
                assert_eq!(s.contains(k), model.contains(&k), "op {i}: {op:?}, {k}");
            }
            assert_eq!(s.len(), model.len(), "op {i}: {op:?}");
            check_set_invariants(&s);
        }
        assert!(s.iter().eq(model.iter().copied()));
        while let Some(k) = model.pop_first() {
            assert_eq!(s.pop_first(), Some(k));
        }
        assert_eq!(s.pop_first(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn map_matches_btreemap(ops in proptest::collection::vec(map_op(), 0..600)) {
            run_map(&ops);
        }

        #[test]
        fn set_matches_btreeset(ops in proptest::collection::vec(set_op(), 0..600)) {
            run_set(&ops);
        }
    }
}
