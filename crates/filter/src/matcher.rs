//! The compiled matcher: many policies of one topic in one immutable structure, so a publish
//! costs work proportional to the message and to the matches, never a loop over all
//! subscriptions.
//!
//! How it works. Every policy is expanded (`$or`) into conjunctions of *slots* (a path plus
//! the rules one of which must hold there). Each conjunction picks one *anchor* slot, the one
//! expected to be rarest: an exact value shared by few subscriptions beats a two-valued
//! field, which beats a prefix, a numeric range or `exists`. Only anchor rules go into
//! per-path indexes (hash maps for exact and case-folded values and for prefixes and
//! suffixes by length, wildcard buckets keyed by their literal prefix or suffix, short lists
//! for ranges and networks). A message is flattened once, only along paths some policy
//! uses; every value is recorded and probed against its path's index, which yields candidate
//! conjunctions. Each candidate then checks its remaining slots directly against the
//! recorded values: slots of one exact string first, by comparing small ids given to the
//! message's strings when they were recorded (`Conj::quick`), which turns most candidates
//! away before any slot is walked. Conjunctions without an indexable slot (only
//! `anything-but` or `exists: false`) are checked for every message of their scope, except
//! those of a single `anything-but` list of strings, which are taken as "all of them minus
//! the ones naming the message's value" (`ButIndex`).
//!
//! A body is scanned strictly where it is read and not at all where it is skipped; before
//! the first body-scope match is reported, the skipped objects and arrays are validated
//! (`json::Scanner::body_is_valid`), so an invalid body matches nothing and bodies that
//! match nothing never pay for validation. Text that `serde_json` has already checked
//! (`Matcher::matches_valid_json`) is only searched for the little that check lets through
//! (`json::Scanner::raw_body_is_valid`): after a match, or while skipping when most recent
//! bodies matched.
//!
//! Nothing allocates per message once the scratch space has grown to the matcher: stamps
//! with the message's epoch replace clearing.

use crate::Scope;
use crate::attributes::{Attributes, Element, Parsed};
use crate::cidr::Cidr;
use crate::error::PolicyError;
use crate::json::{PathTrie, ScanLeaf, Scanner};
use crate::number;
use crate::policy::{AnythingBut, KeyCond, Literal, NumRange, Policy, Rule, fold_case};
use crate::wildcard::Wildcard;
use foldhash::HashMap;
use std::cell::RefCell;

/// Collects policies, then compiles them into one [`Matcher`].
#[derive(Debug, Default)]
pub struct MatcherBuilder {
    entries: Vec<(u32, Scope, Policy)>,
    /// Test hook: check every slot directly instead of through the indexes.
    no_anchors: bool,
}

impl MatcherBuilder {
    /// An empty builder.
    pub fn new() -> MatcherBuilder {
        MatcherBuilder::default()
    }

    /// Add a policy under `id` for `scope`. Adding the same id again ORs the policies.
    /// Fails only if the policy cannot be used in `scope` (nested keys in attribute scope).
    pub fn add(&mut self, id: u32, policy: &Policy, scope: Scope) -> Result<(), PolicyError> {
        policy.check_scope(scope)?;
        self.entries.push((id, scope, policy.clone()));
        Ok(())
    }

    /// Number of policies added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Compile everything added into one matcher.
    pub fn build(self) -> Matcher {
        let mut m = Matcher {
            no_anchors: self.no_anchors,
            ..Matcher::default()
        };
        m.compile(self.entries);
        m
    }

    /// Compile without indexes: every conjunction is checked slot by slot for every message.
    /// Slow; exists so tests can hold the direct path and the indexed path to the same spec.
    #[doc(hidden)]
    pub fn build_unindexed(mut self) -> Matcher {
        self.no_anchors = true;
        self.build()
    }
}

/// A compiled set of policies, `Send + Sync`. Policies can be inserted and removed one by
/// one ([`Matcher::insert`], [`Matcher::remove`]) at a cost that does not grow with the
/// policies already compiled.
#[derive(Debug, Default)]
pub struct Matcher {
    /// Dense policy index → caller's id (`REMOVED` for a free index).
    ids: Vec<u32>,
    /// Caller's id → dense policy index.
    dense: HashMap<u32, u32>,
    /// Dense indexes free for reuse.
    free: Vec<u32>,
    /// Per dense policy index, the range of its conjunctions' ids.
    conj_ranges: Vec<(u32, u32)>,
    /// Conjunctions removed (their ids and slots are not reused).
    removed: usize,
    body_paths: HashMap<Box<str>, u32>,
    /// Test hook: check every slot directly instead of through the indexes.
    no_anchors: bool,
    /// Policies with an alternative without conditions: they accept every message.
    always: Vec<u32>,
    body_trie: Trie,
    attr_paths: HashMap<Box<str>, u32>,
    /// Per path id (body and attribute paths share the numbering).
    paths: Vec<PathInfo>,
    conjs: Vec<Conj>,
    /// Non-anchor slots of every conjunction, contiguous per conjunction.
    slots: Vec<Slot>,
    wildcards: Vec<Wildcard>,
    body_unanchored: Vec<u32>,
    attr_unanchored: Vec<u32>,
    /// Body conjunctions of one `anything-but` list of strings, by path: evaluated as
    /// "all of them, minus those listing the message's value" instead of one by one.
    body_but: Vec<(u32, ButIndex)>,
    has_body: bool,
    has_attrs: bool,
}

#[derive(Debug, Default)]
struct PathInfo {
    index: Option<Box<PathIndex>>,
    /// Some rule at this path compares case-folded strings: fold values when recording.
    fold: bool,
    /// Ids of the strings that non-anchor slots of only exact strings test at this path.
    /// A message string is looked up once when recorded; the candidates then compare ids
    /// instead of bytes (many candidates test the same few values).
    values: Option<Box<HashMap<Box<[u8]>, u32>>>,
}

#[derive(Debug)]
struct Conj {
    /// Dense policy index.
    policy: u32,
    /// Range into `Matcher::slots` of the slots still to check once the anchor holds.
    slots: (u32, u32),
    /// Up to two slots that test one exact string, as `(path, value id)` (`NO_PATH`
    /// when unused): checked first against the message's one string at that path, they
    /// turn away most candidates before the slots are walked.
    quick: [(u32, u32); 2],
    /// Where messages find it, which is where removing it takes it from.
    place: Place,
}

/// Where a conjunction is found by messages.
#[derive(Debug)]
enum Place {
    /// In the index of a path, under the rules of its anchor slot.
    Anchor(u32, Box<[Rule]>),
    /// Among the `anything-but` string lists of a body path (`Matcher::body_but`).
    But(u32, Box<[Rule]>),
    /// Tried for every message with a body (`Matcher::body_unanchored`).
    BodyScan,
    /// Tried for every message with attributes (`Matcher::attr_unanchored`).
    AttrScan,
    /// Removed: found by nothing.
    Removed,
}

const NO_PATH: u32 = u32::MAX;
/// `Matcher::ids` of a dense index whose policy was removed.
const REMOVED: u32 = u32::MAX;

#[derive(Debug)]
struct Slot {
    path: u32,
    rules: Box<[Rule]>,
    /// When every rule is an exact string: their ids in the path's `values` (sorted).
    ids: Option<Box<[u32]>>,
}

/// The conjunctions `{path: [{"anything-but": [strings…]}]}` of one path.
#[derive(Debug, Default)]
struct ButIndex {
    all: Vec<u32>,
    /// For each listed string, the conjunctions that list it.
    listed: HashMap<Box<[u8]>, Vec<u32>>,
}

/// The strings of a slot that is exactly one `anything-but` list of strings.
fn but_strings(rules: &[Rule]) -> Option<Vec<&str>> {
    let [Rule::AnythingBut(AnythingBut::Values(vs))] = rules else {
        return None;
    };
    vs.iter()
        .map(|v| match v {
            Literal::Str(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

/// Affix (prefix or suffix) buckets: probe a value's affix of every length in `lens`.
/// Affixes of up to `SHORT_AFFIX` bytes (most are: `"OC"`, `"ING"`) are keyed by one
/// integer taken from the value's first or last eight bytes, which is far cheaper to cut,
/// hash and compare at each length than a byte string.
#[derive(Debug)]
struct Affix<T> {
    lens: Vec<usize>,
    short: HashMap<u64, Vec<T>>,
    map: HashMap<Box<[u8]>, Vec<T>>,
}

impl<T> Default for Affix<T> {
    fn default() -> Self {
        Affix {
            lens: Vec::new(),
            short: HashMap::default(),
            map: HashMap::default(),
        }
    }
}

/// Longest affix keyed by an integer: its bytes and its length share one `u64`.
const SHORT_AFFIX: usize = 7;

/// `k` (at most `SHORT_AFFIX` bytes) as an integer: the bytes little-endian, the length in
/// the top byte.
#[inline]
fn short_key(k: &[u8]) -> u64 {
    let mut x = 0u64;
    for (i, &c) in k.iter().enumerate() {
        x |= u64::from(c) << (8 * i);
    }
    x | (k.len() as u64) << 56
}

impl<T> Affix<T> {
    fn add(&mut self, key: &[u8], v: T) {
        if !self.lens.contains(&key.len()) {
            self.lens.push(key.len());
            self.lens.sort_unstable();
        }
        if key.len() <= SHORT_AFFIX {
            self.short.entry(short_key(key)).or_default().push(v);
        } else {
            self.map.entry(key.into()).or_default().push(v);
        }
    }

    /// How many entries the bucket of `key` holds.
    fn load(&self, key: &[u8]) -> usize {
        let list = if key.len() <= SHORT_AFFIX {
            self.short.get(&short_key(key))
        } else {
            self.map.get(key)
        };
        list.map_or(0, Vec::len)
    }

    /// Removes the entries `gone` picks from the bucket of `key`. The key's length stays
    /// among those probed: a probe that finds nothing, until the matcher is built again.
    fn remove(&mut self, key: &[u8], gone: impl Fn(&T) -> bool) {
        if key.len() <= SHORT_AFFIX {
            drop_from(&mut self.short, &short_key(key), gone);
        } else {
            drop_from(&mut self.map, key, gone);
        }
    }

    #[inline]
    fn probe(&self, s: &[u8], suffix: bool, mut f: impl FnMut(&T)) {
        // A path has one kind of affix rules, if any: the others are empty.
        if self.lens.is_empty() {
            return;
        }
        // The value's first (or last) eight bytes, little-endian; for a suffix the last
        // byte sits in the top byte so that every suffix is a right shift away.
        let n = s.len().min(8);
        let end = if suffix { &s[s.len() - n..] } else { &s[..n] };
        let mut word = 0u64;
        for (i, &c) in end.iter().enumerate() {
            word |= u64::from(c) << (8 * i);
        }
        if suffix {
            word = word.checked_shl(8 * (8 - n) as u32).unwrap_or(0);
        }
        for &l in &self.lens {
            if l > s.len() {
                break;
            }
            let hit = if l <= SHORT_AFFIX {
                let bytes = if suffix {
                    word.checked_shr(8 * (8 - l) as u32).unwrap_or(0)
                } else {
                    word & ((1u64 << (8 * l)) - 1)
                };
                self.short.get(&(bytes | (l as u64) << 56))
            } else {
                let k = if suffix { &s[s.len() - l..] } else { &s[..l] };
                self.map.get(k)
            };
            if let Some(v) = hit {
                v.iter().for_each(&mut f);
            }
        }
    }
}

/// Anchor rules of one path. Values are conjunction ids (wildcards: `(wildcard, conj)`).
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<[u8]>, Vec<u32>>,
    num: HashMap<u64, Vec<u32>>,
    bool_true: Vec<u32>,
    bool_false: Vec<u32>,
    null: Vec<u32>,
    prefix: Affix<u32>,
    suffix: Affix<u32>,
    fold: HashMap<Box<[u8]>, Vec<u32>>,
    wild_prefix: Affix<(u32, u32)>,
    wild_suffix: Affix<(u32, u32)>,
    wild_any: Vec<(u32, u32)>,
    ranges: Vec<(NumRange, u32)>,
    cidrs: Vec<(Cidr, u32)>,
    exists: Vec<u32>,
    has_strings: bool,
}

/// Body path trie over key segments.
#[derive(Debug)]
struct Trie {
    nodes: Vec<TrieNode>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![TrieNode::default()],
        }
    }
}

/// Children of a node are compared linearly up to this many (cheaper than hashing for the
/// handful of keys most JSON objects have), then through a hash map.
const LINEAR_CHILDREN: usize = 8;

#[derive(Debug, Default)]
struct TrieNode {
    kids: Vec<(Box<[u8]>, u32)>,
    map: Option<HashMap<Box<[u8]>, u32>>,
    leaf: Option<u32>,
    /// Bit `min(len, 63)` set for the length of every child segment: most keys of a
    /// message lead nowhere, and their length alone usually says so.
    lens: u64,
}

impl Trie {
    #[inline]
    fn segment(&self, node: u32, seg: &[u8]) -> Option<u32> {
        let n = &self.nodes[node as usize];
        if (n.lens >> seg.len().min(63)) & 1 == 0 {
            return None;
        }
        if let Some(m) = &n.map {
            return m.get(seg).copied();
        }
        n.kids.iter().find(|(k, _)| **k == *seg).map(|(_, c)| *c)
    }

    fn insert(&mut self, path: &str, pid: u32) {
        let mut node = 0u32;
        for seg in path.as_bytes().split(|&b| b == b'.') {
            node = match self.segment(node, seg) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len() as u32;
                    self.nodes.push(TrieNode::default());
                    let n = &mut self.nodes[node as usize];
                    n.lens |= 1 << seg.len().min(63);
                    n.kids.push((seg.into(), c));
                    if n.kids.len() > LINEAR_CHILDREN {
                        n.map = Some(n.kids.iter().cloned().collect());
                    }
                    c
                }
            };
        }
        self.nodes[node as usize].leaf = Some(pid);
    }
}

/// Whether a key has a `.` (then it spans several segments). Keys are short and mostly
/// dot-free: eight bytes per step, no library call.
#[inline]
fn has_dot(key: &[u8]) -> bool {
    const DOTS: u64 = 0x2E2E_2E2E_2E2E_2E2E;
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("eight bytes")) ^ DOTS;
        if x.wrapping_sub(LOW) & !x & HIGH != 0 {
            return true;
        }
    }
    // Not `contains`: that is a `memchr` call, for fewer than eight bytes.
    #[allow(clippy::manual_contains)]
    chunks.remainder().iter().any(|&c| c == b'.')
}

impl PathTrie for Trie {
    #[inline]
    fn child(&self, node: u32, key: &[u8]) -> Option<u32> {
        if !has_dot(key) {
            return self.segment(node, key);
        }
        let mut n = node;
        for seg in key.split(|&b| b == b'.') {
            n = self.segment(n, seg)?;
        }
        Some(n)
    }

    #[inline]
    fn has_children(&self, node: u32) -> bool {
        !self.nodes[node as usize].kids.is_empty()
    }

    #[inline]
    fn leaf(&self, node: u32) -> Option<u32> {
        self.nodes[node as usize].leaf
    }
}

/// Per-message working memory. Reused across messages (and across matchers) so matching
/// does not allocate once it is warm; entries are valid only when stamped with the current
/// epoch, so nothing is cleared between messages.
#[derive(Debug, Default)]
pub struct MatchScratch {
    epoch: u32,
    path_stamp: Vec<u32>,
    path_head: Vec<u32>,
    /// Per path: the value id of its only leaf, or `MANY_IDS` when it has several.
    path_vid: Vec<u32>,
    leaves: Vec<Leaf>,
    arena: Vec<u8>,
    conj_stamp: Vec<u32>,
    policy_stamp: Vec<u32>,
    cands: Vec<u32>,
    body_out: Vec<u32>,
    tmp: Vec<u8>,
    /// Byte ranges the body scan skipped (validated only when something matched).
    skipped: Vec<(u32, u32)>,
    /// How often recent well-formed bodies matched something, in 1/`RATE_ONE`: decides
    /// whether their skipped blocks are checked as they are skipped or only once matched.
    match_rate: u32,
}

/// `MatchScratch::match_rate` of bodies that all match.
const RATE_ONE: u32 = 1 << 12;
/// Checking while skipping costs about a third of the skip on every body, checking after a
/// match about one more skip on matched bodies: the first wins once more than about one
/// body in four matches.
const CHECK_WHILE_SKIPPING: u32 = RATE_ONE / 4;

const NO_LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Num,
    True,
    False,
    Null,
    Binary,
}

#[derive(Debug, Clone, Copy)]
struct Leaf {
    next: u32,
    kind: Kind,
    num: f64,
    /// String bytes in the arena.
    off: u32,
    len: u32,
    /// Case-folded string bytes in the arena (when the path needs them).
    foff: u32,
    flen: u32,
    /// Id of the string in the path's `values`, or `NO_ID`.
    vid: u32,
}

const NO_ID: u32 = u32::MAX;
/// `MatchScratch::path_vid` of a path with several leaves.
const MANY_IDS: u32 = u32::MAX - 1;

impl MatchScratch {
    /// Fresh scratch space (grows to fit the matchers it is used with).
    pub fn new() -> MatchScratch {
        MatchScratch::default()
    }

    fn begin(&mut self, m: &Matcher) {
        if self.epoch == u32::MAX {
            // After four billion messages stamps could repeat: start over.
            *self = MatchScratch::default();
        }
        self.epoch += 1;
        let grow = |v: &mut Vec<u32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0);
            }
        };
        grow(&mut self.path_stamp, m.paths.len());
        grow(&mut self.path_vid, m.paths.len());
        if self.path_head.len() < m.paths.len() {
            self.path_head.resize(m.paths.len(), NO_LEAF);
        }
        grow(&mut self.conj_stamp, m.conjs.len());
        grow(&mut self.policy_stamp, m.ids.len());
        self.leaves.clear();
        self.arena.clear();
        self.cands.clear();
        self.body_out.clear();
    }

    fn str_of(&self, l: &Leaf) -> &[u8] {
        &self.arena[l.off as usize..(l.off + l.len) as usize]
    }

    fn fold_of(&self, l: &Leaf) -> &[u8] {
        &self.arena[l.foff as usize..(l.foff + l.flen) as usize]
    }

    fn push_leaf(&mut self, pid: u32, kind: Kind, num: f64, s: &[u8], fold: bool) -> Leaf {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(s);
        let (mut foff, mut flen) = (off, s.len() as u32);
        if fold && kind == Kind::Str {
            foff = self.arena.len() as u32;
            if s.is_ascii() {
                self.arena.extend(s.iter().map(u8::to_ascii_lowercase));
            } else {
                let folded = fold_case(&String::from_utf8_lossy(s));
                self.arena.extend_from_slice(folded.as_bytes());
            }
            flen = self.arena.len() as u32 - foff;
        }
        let p = pid as usize;
        let next = if self.path_stamp[p] == self.epoch {
            self.path_head[p]
        } else {
            NO_LEAF
        };
        self.path_stamp[p] = self.epoch;
        self.path_head[p] = self.leaves.len() as u32;
        let leaf = Leaf {
            next,
            kind,
            num,
            off,
            len: s.len() as u32,
            foff,
            flen,
            vid: NO_ID,
        };
        self.leaves.push(leaf);
        leaf
    }

    fn first_leaf(&self, pid: u32) -> u32 {
        if self.path_stamp[pid as usize] == self.epoch {
            self.path_head[pid as usize]
        } else {
            NO_LEAF
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<MatchScratch> = RefCell::new(MatchScratch::new());
}

impl Matcher {
    /// Append to `out` the id of every policy that accepts this message (each id once).
    /// `body` is the raw payload as published; `attrs` its message attributes.
    /// Uses a per-thread scratch space; see [`Matcher::matches_with`] to pass your own.
    pub fn matches(&self, body: &[u8], attrs: &Attributes, out: &mut Vec<u32>) {
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut sc) => self.matches_with(&mut sc, body, attrs, out),
            Err(_) => self.matches_with(&mut MatchScratch::new(), body, attrs, out),
        });
    }

    /// [`Matcher::matches`] for a body the caller vouches is well-formed JSON text: it passed
    /// `serde_json`'s check of a `RawValue` (JSON's grammar, UTF-8, no raw control
    /// characters in strings, well-formed escapes), as every message the router publishes
    /// has. Then the parts of the body no policy looks into need not be validated when
    /// something matched, only searched for what that check lets through and `matches`
    /// refuses (`\u` escapes of lone surrogates, numbers beyond `f64`, nesting deeper than
    /// 127), so on such a body the result is exactly that of `matches`, for less work.
    ///
    /// On a body that is not well-formed the result is unspecified (some ids or none), but
    /// matching still terminates without panicking.
    pub fn matches_valid_json(&self, body: &[u8], attrs: &Attributes, out: &mut Vec<u32>) {
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut sc) => self.run(&mut sc, body, true, attrs, out),
            Err(_) => self.run(&mut MatchScratch::new(), body, true, attrs, out),
        });
    }

    /// [`Matcher::matches_valid_json`] with caller-provided scratch space.
    pub fn matches_valid_json_with(
        &self,
        sc: &mut MatchScratch,
        body: &[u8],
        attrs: &Attributes,
        out: &mut Vec<u32>,
    ) {
        self.run(sc, body, true, attrs, out);
    }

    /// Number of distinct policy ids compiled in.
    pub fn policy_count(&self) -> usize {
        self.dense.len()
    }

    /// [`Matcher::matches`] with caller-provided scratch space.
    pub fn matches_with(
        &self,
        sc: &mut MatchScratch,
        body: &[u8],
        attrs: &Attributes,
        out: &mut Vec<u32>,
    ) {
        self.run(sc, body, false, attrs, out);
    }

    /// `well_formed`: the body passed `serde_json`'s `RawValue` check.
    fn run(
        &self,
        sc: &mut MatchScratch,
        body: &[u8],
        well_formed: bool,
        attrs: &Attributes,
        out: &mut Vec<u32>,
    ) {
        sc.begin(self);
        let epoch = sc.epoch;
        for &p in &self.always {
            if sc.policy_stamp[p as usize] != epoch {
                sc.policy_stamp[p as usize] = epoch;
                out.push(self.ids[p as usize]);
            }
        }
        if self.has_attrs {
            for (name, av) in attrs.iter() {
                if let Some(&pid) = self.attr_paths.get(name) {
                    self.record_attribute(sc, pid, av.value().as_bytes(), &av.parsed);
                }
            }
            let absence_counts = !attrs.is_empty();
            let mut cands = std::mem::take(&mut sc.cands);
            for &c in cands.iter().chain(&self.attr_unanchored) {
                self.try_conj(sc, c, absence_counts, false, out);
            }
            cands.clear();
            sc.cands = cands;
        }
        if self.has_body {
            let buffers = (std::mem::take(&mut sc.tmp), std::mem::take(&mut sc.skipped));
            let check_while_skipping = well_formed && sc.match_rate > CHECK_WHILE_SKIPPING;
            let mut scanner = Scanner::new(body, &self.body_trie, buffers, check_while_skipping);
            let res = scanner.scan_body(0, &mut |pid, leaf| self.record_body_leaf(sc, pid, leaf));
            if res == Ok(true) {
                let cands = std::mem::take(&mut sc.cands);
                for &c in cands.iter().chain(&self.body_unanchored) {
                    let mut dummy = Vec::new();
                    self.try_conj(sc, c, true, true, &mut dummy);
                }
                sc.cands = cands;
                for (pid, ix) in &self.body_but {
                    self.but_matches(sc, *pid, ix);
                }
                if well_formed {
                    // An exponential average over about the last 16 bodies.
                    let hit = if sc.body_out.is_empty() { 0 } else { RATE_ONE };
                    sc.match_rate = sc.match_rate - sc.match_rate / 16 + hit / 16;
                }
                if !sc.body_out.is_empty()
                    && if well_formed {
                        scanner.raw_body_is_valid()
                    } else {
                        scanner.body_is_valid()
                    }
                {
                    out.extend(sc.body_out.iter().map(|&p| self.ids[p as usize]));
                }
            }
            (sc.tmp, sc.skipped) = scanner.into_buffers();
        }
    }

    /// The `anything-but` string lists at `pid` (see `Matcher::body_but`). A value other
    /// than a string or null satisfies every list; a string satisfies the lists that do not
    /// name it. With several values at the path, each list is checked on its own.
    fn but_matches(&self, sc: &mut MatchScratch, pid: u32, ix: &ButIndex) {
        let epoch = sc.epoch;
        let mut i = sc.first_leaf(pid);
        let mut string = None;
        let mut any = false;
        let mut several = false;
        while i != NO_LEAF {
            let l = sc.leaves[i as usize];
            match l.kind {
                Kind::Null => {}
                Kind::Str if string.is_none() && !any => string = Some(l),
                Kind::Str => several = true,
                _ => any = true,
            }
            i = l.next;
        }
        if string.is_none() && !any {
            return;
        }
        if several {
            for &c in &ix.all {
                if sc.policy_stamp[self.conjs[c as usize].policy as usize] != epoch
                    && self.slot_of_but_holds(sc, pid, c)
                {
                    self.accept_body(sc, c);
                }
            }
            return;
        }
        if !any && let Some(l) = string {
            // `conj_stamp` marks the lists naming the value (these conjunctions are never
            // anchor candidates, so the stamp is free for this).
            if let Some(named) = ix.listed.get(sc.str_of(&l)) {
                for &c in named {
                    sc.conj_stamp[c as usize] = epoch;
                }
            }
        }
        for &c in &ix.all {
            if sc.conj_stamp[c as usize] != epoch {
                self.accept_body(sc, c);
            }
        }
    }

    /// Whether some value at `pid` is outside the `anything-but` list of conjunction `c`.
    fn slot_of_but_holds(&self, sc: &MatchScratch, pid: u32, c: u32) -> bool {
        let ix = &self
            .body_but
            .iter()
            .find(|(p, _)| *p == pid)
            .expect("indexed")
            .1;
        let mut i = sc.first_leaf(pid);
        while i != NO_LEAF {
            let l = &sc.leaves[i as usize];
            match l.kind {
                Kind::Null => {}
                Kind::Str => {
                    let named = ix.listed.get(sc.str_of(l));
                    if !named.is_some_and(|v| v.contains(&c)) {
                        return true;
                    }
                }
                _ => return true,
            }
            i = l.next;
        }
        false
    }

    /// Record a body-scope match of conjunction `c` (each policy once).
    #[inline]
    fn accept_body(&self, sc: &mut MatchScratch, c: u32) {
        let p = self.conjs[c as usize].policy as usize;
        if sc.policy_stamp[p] != sc.epoch {
            sc.policy_stamp[p] = sc.epoch;
            sc.body_out.push(p as u32);
        }
    }

    fn try_conj(
        &self,
        sc: &mut MatchScratch,
        c: u32,
        absence_counts: bool,
        body: bool,
        out: &mut Vec<u32>,
    ) {
        let conj = &self.conjs[c as usize];
        let p = conj.policy as usize;
        if sc.policy_stamp[p] == sc.epoch {
            return;
        }
        for &(path, id) in &conj.quick {
            if path == NO_PATH {
                break;
            }
            // No value at the path, or one string that is another: the slot fails.
            if sc.path_stamp[path as usize] != sc.epoch {
                return;
            }
            let v = sc.path_vid[path as usize];
            if v != MANY_IDS && v != id {
                return;
            }
        }
        let (s, e) = conj.slots;
        if self.slots[s as usize..e as usize]
            .iter()
            .all(|slot| self.slot_holds(sc, slot, absence_counts))
        {
            sc.policy_stamp[p] = sc.epoch;
            if body {
                sc.body_out.push(p as u32);
            } else {
                out.push(self.ids[p]);
            }
        }
    }

    #[inline]
    fn slot_holds(&self, sc: &MatchScratch, slot: &Slot, absence_counts: bool) -> bool {
        let first = sc.first_leaf(slot.path);
        if let Some(ids) = &slot.ids {
            // Exact strings: compare the ids given to the message's strings when recorded.
            let mut i = first;
            while i != NO_LEAF {
                let l = &sc.leaves[i as usize];
                if l.vid != NO_ID && ids.contains(&l.vid) {
                    return true;
                }
                i = l.next;
            }
            return false;
        }
        // Whether the path has a value other than null (only `exists` asks).
        let present = || {
            let mut i = first;
            while i != NO_LEAF {
                let l = &sc.leaves[i as usize];
                if l.kind != Kind::Null {
                    return true;
                }
                i = l.next;
            }
            false
        };
        slot.rules.iter().any(|r| match r {
            Rule::Exists(true) => present(),
            Rule::Exists(false) => absence_counts && !present(),
            _ => {
                let mut i = first;
                while i != NO_LEAF {
                    let l = &sc.leaves[i as usize];
                    if leaf_satisfies(r, l, sc) {
                        return true;
                    }
                    i = l.next;
                }
                false
            }
        })
    }

    fn record_attribute(&self, sc: &mut MatchScratch, pid: u32, value: &[u8], parsed: &Parsed) {
        let fold = self.paths[pid as usize].fold;
        match parsed {
            Parsed::Str => self.record(sc, pid, Kind::Str, 0.0, value, fold),
            Parsed::Num(k) => self.record(sc, pid, Kind::Num, *k, b"", fold),
            Parsed::Binary => self.record(sc, pid, Kind::Binary, 0.0, b"", fold),
            Parsed::Array(items) => {
                for e in items {
                    match e {
                        Element::Str(s) => self.record(sc, pid, Kind::Str, 0.0, s.as_bytes(), fold),
                        Element::Num(k) => self.record(sc, pid, Kind::Num, *k, b"", fold),
                        Element::Bool(b) => self.record(
                            sc,
                            pid,
                            if *b { Kind::True } else { Kind::False },
                            0.0,
                            b"",
                            fold,
                        ),
                        Element::Null => self.record(sc, pid, Kind::Null, 0.0, b"", fold),
                    }
                }
            }
        }
    }

    #[inline]
    fn record_body_leaf(&self, sc: &mut MatchScratch, pid: u32, leaf: ScanLeaf<'_>) {
        let fold = self.paths[pid as usize].fold;
        match leaf {
            ScanLeaf::Str(s) => self.record(sc, pid, Kind::Str, 0.0, s, fold),
            ScanLeaf::Num(x) => self.record(sc, pid, Kind::Num, number::key(x), b"", fold),
            ScanLeaf::Bool(b) => self.record(
                sc,
                pid,
                if b { Kind::True } else { Kind::False },
                0.0,
                b"",
                fold,
            ),
            ScanLeaf::Null => self.record(sc, pid, Kind::Null, 0.0, b"", fold),
        }
    }

    /// Record one value at `pid` and collect the conjunctions whose anchor it satisfies.
    #[inline]
    fn record(&self, sc: &mut MatchScratch, pid: u32, kind: Kind, num: f64, s: &[u8], fold: bool) {
        let leaf = sc.push_leaf(pid, kind, num, s, fold);
        let mut vid = NO_ID;
        if kind == Kind::Str
            && let Some(values) = &self.paths[pid as usize].values
            && let Some(&id) = values.get(s)
            && let Some(l) = sc.leaves.last_mut()
        {
            l.vid = id;
            vid = id;
        }
        sc.path_vid[pid as usize] = if leaf.next == NO_LEAF { vid } else { MANY_IDS };
        let Some(ix) = &self.paths[pid as usize].index else {
            return;
        };
        let epoch = sc.epoch;
        let MatchScratch {
            conj_stamp,
            cands,
            arena,
            ..
        } = sc;
        let mut hit = |c: u32| {
            if conj_stamp[c as usize] != epoch {
                conj_stamp[c as usize] = epoch;
                cands.push(c);
            }
        };
        if kind != Kind::Null {
            ix.exists.iter().for_each(|&c| hit(c));
        }
        match kind {
            Kind::Str => {
                let s = &arena[leaf.off as usize..(leaf.off + leaf.len) as usize];
                if let Some(v) = ix.exact.get(s) {
                    v.iter().for_each(|&c| hit(c));
                }
                if !ix.has_strings {
                    return;
                }
                ix.prefix.probe(s, false, |&c| hit(c));
                ix.suffix.probe(s, true, |&c| hit(c));
                if !ix.fold.is_empty() {
                    let f = &arena[leaf.foff as usize..(leaf.foff + leaf.flen) as usize];
                    if let Some(v) = ix.fold.get(f) {
                        v.iter().for_each(|&c| hit(c));
                    }
                }
                let wild = &self.wildcards;
                let mut check = |&(w, c): &(u32, u32)| {
                    if wild[w as usize].is_match(s) {
                        hit(c);
                    }
                };
                ix.wild_prefix.probe(s, false, &mut check);
                ix.wild_suffix.probe(s, true, &mut check);
                ix.wild_any.iter().for_each(&mut check);
                for (net, c) in &ix.cidrs {
                    if net.contains(s) {
                        hit(*c);
                    }
                }
            }
            Kind::Num => {
                if let Some(v) = ix.num.get(&number::key_bits(num)) {
                    v.iter().for_each(|&c| hit(c));
                }
                for (r, c) in &ix.ranges {
                    if r.contains(num) {
                        hit(*c);
                    }
                }
            }
            Kind::True => ix.bool_true.iter().for_each(|&c| hit(c)),
            Kind::False => ix.bool_false.iter().for_each(|&c| hit(c)),
            Kind::Null => ix.null.iter().for_each(|&c| hit(c)),
            Kind::Binary => {}
        }
    }
}

fn leaf_satisfies(rule: &Rule, l: &Leaf, sc: &MatchScratch) -> bool {
    match rule {
        Rule::Exact(lit) => literal_eq(lit, l, sc),
        Rule::Prefix(p) => l.kind == Kind::Str && sc.str_of(l).starts_with(p.as_bytes()),
        Rule::Suffix(p) => l.kind == Kind::Str && sc.str_of(l).ends_with(p.as_bytes()),
        Rule::EqualsIgnoreCase(p) => l.kind == Kind::Str && sc.fold_of(l) == p.as_bytes(),
        Rule::Wildcard(w) => l.kind == Kind::Str && w.is_match(sc.str_of(l)),
        Rule::Cidr(c) => l.kind == Kind::Str && c.contains(sc.str_of(l)),
        Rule::Numeric(r) => l.kind == Kind::Num && r.contains(l.num),
        Rule::Exists(_) => unreachable!("handled by slot_holds"),
        Rule::AnythingBut(ab) => match ab {
            AnythingBut::Values(vs) => {
                matches!(l.kind, Kind::Str | Kind::Num | Kind::True | Kind::False)
                    && !vs.iter().any(|v| literal_eq(v, l, sc))
            }
            AnythingBut::Prefix(p) => {
                l.kind == Kind::Str && !sc.str_of(l).starts_with(p.as_bytes())
            }
            AnythingBut::Suffix(p) => l.kind == Kind::Str && !sc.str_of(l).ends_with(p.as_bytes()),
            AnythingBut::Wildcard(w) => l.kind == Kind::Str && !w.is_match(sc.str_of(l)),
            AnythingBut::EqualsIgnoreCase(p) => {
                l.kind == Kind::Str && sc.fold_of(l) != p.as_bytes()
            }
        },
    }
}

#[inline]
fn literal_eq(lit: &Literal, l: &Leaf, sc: &MatchScratch) -> bool {
    match lit {
        Literal::Str(s) => l.kind == Kind::Str && sc.str_of(l) == s.as_bytes(),
        Literal::Num(k) => l.kind == Kind::Num && l.num == *k,
        Literal::Bool(true) => l.kind == Kind::True,
        Literal::Bool(false) => l.kind == Kind::False,
        Literal::Null => l.kind == Kind::Null,
    }
}

/// Bucket of an anchor rule, for estimating how many conjunctions share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Bucket {
    Exact(u32, Vec<u8>),
    Num(u32, u64),
    Literal(u32, u8),
    Prefix(u32, Vec<u8>),
    Suffix(u32, Vec<u8>),
    Fold(u32, Vec<u8>),
    WildPrefix(u32, Vec<u8>),
    WildSuffix(u32, Vec<u8>),
    Scan(u32, u8),
}

/// Which literal end of a wildcard indexes it.
enum WildAnchor<'a> {
    Prefix(&'a str),
    Suffix(&'a str),
    None,
}

/// The longer literal end: fewer values share it (`G*EEN` is better found by `EEN` than
/// by `G`), so fewer candidates run the full match.
fn wild_anchor(w: &Wildcard) -> WildAnchor<'_> {
    let (p, s) = (w.literal_prefix(), w.literal_suffix());
    if p.is_empty() && s.is_empty() {
        WildAnchor::None
    } else if p.len() >= s.len() {
        WildAnchor::Prefix(p)
    } else {
        WildAnchor::Suffix(s)
    }
}

/// Relative cost of probing a bucket kind, beyond the number of conjunctions in it: affix
/// and wildcard buckets also catch values that are not equal, ranges and `exists` catch most.
fn bucket_weight(b: &Bucket) -> u64 {
    match b {
        Bucket::Exact(..) | Bucket::Num(..) | Bucket::Fold(..) => 1,
        Bucket::Literal(..) => 2,
        Bucket::Prefix(..) | Bucket::Suffix(..) => 3,
        Bucket::WildPrefix(..) | Bucket::WildSuffix(..) => 4,
        Bucket::Scan(..) => 16,
    }
}

fn rule_bucket(pid: u32, r: &Rule) -> Option<Bucket> {
    Some(match r {
        Rule::Exact(Literal::Str(s)) => Bucket::Exact(pid, s.as_bytes().to_vec()),
        Rule::Exact(Literal::Num(k)) => Bucket::Num(pid, number::key_bits(*k)),
        Rule::Exact(Literal::Bool(b)) => Bucket::Literal(pid, u8::from(*b)),
        Rule::Exact(Literal::Null) => Bucket::Literal(pid, 2),
        Rule::Prefix(p) => Bucket::Prefix(pid, p.as_bytes().to_vec()),
        Rule::Suffix(p) => Bucket::Suffix(pid, p.as_bytes().to_vec()),
        Rule::EqualsIgnoreCase(p) => Bucket::Fold(pid, p.as_bytes().to_vec()),
        Rule::Wildcard(w) => match wild_anchor(w) {
            WildAnchor::Prefix(p) => Bucket::WildPrefix(pid, p.as_bytes().to_vec()),
            WildAnchor::Suffix(p) => Bucket::WildSuffix(pid, p.as_bytes().to_vec()),
            WildAnchor::None => Bucket::Scan(pid, 0),
        },
        Rule::Numeric(_) => Bucket::Scan(pid, 1),
        Rule::Cidr(_) => Bucket::Scan(pid, 2),
        Rule::Exists(true) => Bucket::Scan(pid, 3),
        Rule::Exists(false) | Rule::AnythingBut(_) => return None,
    })
}

/// One alternative of a policy, its paths numbered, before it is placed.
struct PendingConj {
    policy: u32,
    body: bool,
    slots: Vec<(u32, Vec<Rule>)>,
}

impl Matcher {
    fn path_id(&mut self, path: &str, body: bool) -> u32 {
        let next = self.paths.len() as u32;
        let known = if body {
            &mut self.body_paths
        } else {
            &mut self.attr_paths
        };
        if let Some(&id) = known.get(path) {
            return id;
        }
        known.insert(path.into(), next);
        if body {
            self.body_trie.insert(path, next);
        }
        self.paths.push(PathInfo::default());
        next
    }

    /// The dense index of the policy `id`: its own, or a new one.
    fn dense_id(&mut self, id: u32) -> u32 {
        if let Some(&p) = self.dense.get(&id) {
            return p;
        }
        let p = match self.free.pop() {
            Some(p) => {
                self.ids[p as usize] = id;
                p
            }
            None => {
                self.ids.push(id);
                self.conj_ranges.push((0, 0));
                self.ids.len() as u32 - 1
            }
        };
        self.dense.insert(id, p);
        p
    }

    /// The conjunctions of `policy` under dense index `p`, its paths numbered; an
    /// alternative without conditions makes the policy accept every message.
    fn expand(&mut self, p: u32, scope: Scope, policy: &Policy, out: &mut Vec<PendingConj>) {
        let body = scope == Scope::MessageBody;
        for alt in policy.alternatives() {
            if alt.is_empty() {
                if !self.always.contains(&p) {
                    self.always.push(p);
                }
                continue;
            }
            let slots = alt
                .iter()
                .map(|k: &&KeyCond| (self.path_id(&k.path, body), k.rules.clone()))
                .collect();
            out.push(PendingConj {
                policy: p,
                body,
                slots,
            });
        }
    }

    /// Compiles `entries` into this empty matcher, choosing anchors with the whole set
    /// in view.
    fn compile(&mut self, entries: Vec<(u32, Scope, Policy)>) {
        let mut pending = Vec::new();
        for (id, scope, policy) in &entries {
            let p = self.dense_id(*id);
            self.expand(p, *scope, policy, &mut pending);
        }
        drop(entries);
        // A policy's conjunctions are numbered together, so that removing it finds them.
        pending.sort_by_key(|pc| pc.policy);

        // How many conjunctions could anchor on each bucket.
        let mut counts: HashMap<Bucket, u64> = HashMap::default();
        for pc in &pending {
            for (pid, rules) in &pc.slots {
                if let Some(bs) = slot_buckets(*pid, rules) {
                    for b in bs {
                        *counts.entry(b).or_default() += 1;
                    }
                }
            }
        }
        for pc in pending {
            let anchor = self.choose_anchor(&pc, |b| counts[b]);
            self.place(pc, anchor);
        }
    }

    /// Adds the policy `id` to the compiled matcher, replacing what it was. Costs work in
    /// proportion to the policy, not to the policies already compiled: each of its
    /// conjunctions anchors on the slot whose buckets hold the fewest conjunctions now.
    /// Fails only if the policy cannot be used in `scope`; the matcher is then unchanged.
    pub fn insert(&mut self, id: u32, policy: &Policy, scope: Scope) -> Result<(), PolicyError> {
        policy.check_scope(scope)?;
        self.remove(id);
        let p = self.dense_id(id);
        let mut pending = Vec::new();
        self.expand(p, scope, policy, &mut pending);
        for pc in pending {
            let anchor = self.choose_anchor(&pc, |b| self.bucket_load(b) + 1);
            self.place(pc, anchor);
        }
        Ok(())
    }

    /// Removes the policy `id`; `false` when there was none. Its conjunctions leave the
    /// indexes at once; the space they took stays until the matcher is built again (see
    /// [`Matcher::removed_conjunctions`]).
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(p) = self.dense.remove(&id) else {
            return false;
        };
        self.always.retain(|&a| a != p);
        let (start, end) = std::mem::take(&mut self.conj_ranges[p as usize]);
        for c in start..end {
            match std::mem::replace(&mut self.conjs[c as usize].place, Place::Removed) {
                Place::Anchor(pid, rules) => {
                    let ix = self.paths[pid as usize]
                        .index
                        .as_mut()
                        .expect("an anchor's path is indexed");
                    for r in rules {
                        ix.remove(&r, c);
                    }
                }
                Place::But(pid, rules) => {
                    let at = self
                        .body_but
                        .iter()
                        .position(|(path, _)| *path == pid)
                        .expect("a listed path");
                    let ix = &mut self.body_but[at].1;
                    ix.all.retain(|&x| x != c);
                    for v in but_strings(&rules).expect("a list of strings") {
                        drop_from(&mut ix.listed, v.as_bytes(), |&x| x == c);
                    }
                    if ix.all.is_empty() {
                        self.body_but.swap_remove(at);
                    }
                }
                Place::BodyScan => self.body_unanchored.retain(|&x| x != c),
                Place::AttrScan => self.attr_unanchored.retain(|&x| x != c),
                Place::Removed => unreachable!("a live policy's conjunction"),
            }
            self.removed += 1;
        }
        self.ids[p as usize] = REMOVED;
        self.free.push(p);
        true
    }

    /// Conjunctions removed whose space is still taken: once they outnumber the live
    /// ones, building the matcher again from the live policies is worth its cost.
    pub fn removed_conjunctions(&self) -> usize {
        self.removed
    }

    /// Conjunctions of live policies.
    pub fn live_conjunctions(&self) -> usize {
        self.conjs.len() - self.removed
    }

    /// The slot to anchor a conjunction on: the one whose buckets are cheapest by
    /// `load` (how many conjunctions each holds or would hold), or none when no slot
    /// can be indexed.
    fn choose_anchor(&self, pc: &PendingConj, load: impl Fn(&Bucket) -> u64) -> Option<usize> {
        if self.no_anchors {
            return None;
        }
        pc.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (pid, rules))| {
                let bs = slot_buckets(*pid, rules)?;
                Some((
                    bs.iter().map(|b| load(b) * bucket_weight(b)).sum::<u64>(),
                    i,
                ))
            })
            .min()
            .map(|(_, i)| i)
    }

    /// How many conjunctions are anchored in bucket `b` now.
    fn bucket_load(&self, b: &Bucket) -> u64 {
        let pid = match b {
            Bucket::Exact(p, _)
            | Bucket::Num(p, _)
            | Bucket::Literal(p, _)
            | Bucket::Prefix(p, _)
            | Bucket::Suffix(p, _)
            | Bucket::Fold(p, _)
            | Bucket::WildPrefix(p, _)
            | Bucket::WildSuffix(p, _)
            | Bucket::Scan(p, _) => *p,
        };
        let Some(ix) = &self.paths[pid as usize].index else {
            return 0;
        };
        let n = match b {
            Bucket::Exact(_, k) => ix.exact.get(k.as_slice()).map_or(0, Vec::len),
            Bucket::Num(_, k) => ix.num.get(k).map_or(0, Vec::len),
            Bucket::Literal(_, 0) => ix.bool_false.len(),
            Bucket::Literal(_, 1) => ix.bool_true.len(),
            Bucket::Literal(..) => ix.null.len(),
            Bucket::Prefix(_, k) => ix.prefix.load(k),
            Bucket::Suffix(_, k) => ix.suffix.load(k),
            Bucket::Fold(_, k) => ix.fold.get(k.as_slice()).map_or(0, Vec::len),
            Bucket::WildPrefix(_, k) => ix.wild_prefix.load(k),
            Bucket::WildSuffix(_, k) => ix.wild_suffix.load(k),
            Bucket::Scan(_, 0) => ix.wild_any.len(),
            Bucket::Scan(_, 1) => ix.ranges.len(),
            Bucket::Scan(_, 2) => ix.cidrs.len(),
            Bucket::Scan(..) => ix.exists.len(),
        };
        n as u64
    }

    /// Numbers the conjunction `pc` and puts it where messages find it: its anchor
    /// slot's rules into the path's index, or, without an anchor, among the lists of one
    /// path's `anything-but` strings or the conjunctions every message of its scope tries.
    fn place(&mut self, pc: PendingConj, anchor: Option<usize>) {
        let c = self.conjs.len() as u32;
        let range = &mut self.conj_ranges[pc.policy as usize];
        if range.0 == range.1 {
            *range = (c, c);
        }
        debug_assert_eq!(range.1, c, "a policy's conjunctions are numbered together");
        range.1 = c + 1;
        let start = self.slots.len() as u32;
        // One slot, one `anything-but` list of strings: goes to `body_but`.
        let but_single = match pc.slots.as_slice() {
            [(pid, rules)] if !self.no_anchors && but_strings(rules).is_some() => Some(*pid),
            _ => None,
        };
        let mut place = None;
        for (i, (pid, rules)) in pc.slots.into_iter().enumerate() {
            if rules.iter().any(|r| {
                matches!(
                    r,
                    Rule::EqualsIgnoreCase(_) | Rule::AnythingBut(AnythingBut::EqualsIgnoreCase(_))
                )
            }) {
                self.paths[pid as usize].fold = true;
            }
            if Some(i) == anchor {
                for r in &rules {
                    self.index_rule(pid, r.clone(), c);
                }
                place = Some(Place::Anchor(pid, rules.into_boxed_slice()));
            } else {
                let ids = self.value_ids(pid, &rules);
                self.slots.push(Slot {
                    path: pid,
                    rules: rules.into_boxed_slice(),
                    ids,
                });
            }
        }
        let end = self.slots.len() as u32;
        let mut quick = [(NO_PATH, 0); 2];
        let singles = self.slots[start as usize..end as usize]
            .iter()
            .filter_map(|s| match s.ids.as_deref() {
                Some(&[id]) => Some((s.path, id)),
                _ => None,
            });
        for (q, single) in quick.iter_mut().zip(singles) {
            *q = single;
        }
        let place = match (place, but_single) {
            (Some(anchored), _) => anchored,
            (None, Some(pid)) if pc.body => {
                let Slot { rules, .. } = self.slots.pop().expect("the one slot");
                let at = match self.body_but.iter().position(|(p, _)| *p == pid) {
                    Some(at) => at,
                    None => {
                        self.body_but.push((pid, ButIndex::default()));
                        self.body_but.len() - 1
                    }
                };
                let ix = &mut self.body_but[at].1;
                ix.all.push(c);
                for v in but_strings(&rules).expect("checked") {
                    let list = ix.listed.entry(v.as_bytes().into()).or_default();
                    if list.last() != Some(&c) {
                        list.push(c);
                    }
                }
                Place::But(pid, rules)
            }
            (None, _) if pc.body => {
                self.body_unanchored.push(c);
                Place::BodyScan
            }
            (None, _) => {
                self.attr_unanchored.push(c);
                Place::AttrScan
            }
        };
        let slots = if matches!(place, Place::But(..)) {
            (start, start)
        } else {
            (start, end)
        };
        self.conjs.push(Conj {
            policy: pc.policy,
            slots,
            quick,
            place,
        });
        if pc.body {
            self.has_body = true;
        } else {
            self.has_attrs = true;
        }
    }

    /// Ids for a slot of exact strings only (see `PathInfo::values`), else `None`.
    fn value_ids(&mut self, pid: u32, rules: &[Rule]) -> Option<Box<[u32]>> {
        if self.no_anchors
            || !rules
                .iter()
                .all(|r| matches!(r, Rule::Exact(Literal::Str(_))))
        {
            return None;
        }
        let values = self.paths[pid as usize]
            .values
            .get_or_insert_with(Default::default);
        let mut ids: Vec<u32> = rules
            .iter()
            .map(|r| {
                let Rule::Exact(Literal::Str(v)) = r else {
                    unreachable!("checked above")
                };
                let next = values.len() as u32;
                *values.entry(v.as_bytes().into()).or_insert(next)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Some(ids.into_boxed_slice())
    }

    fn index_rule(&mut self, pid: u32, r: Rule, c: u32) {
        let ix = self.paths[pid as usize]
            .index
            .get_or_insert_with(Default::default);
        match r {
            Rule::Exact(Literal::Str(s)) => {
                ix.exact.entry(s.into_bytes().into()).or_default().push(c)
            }
            Rule::Exact(Literal::Num(k)) => ix.num.entry(number::key_bits(k)).or_default().push(c),
            Rule::Exact(Literal::Bool(true)) => ix.bool_true.push(c),
            Rule::Exact(Literal::Bool(false)) => ix.bool_false.push(c),
            Rule::Exact(Literal::Null) => ix.null.push(c),
            Rule::Prefix(p) => {
                ix.has_strings = true;
                ix.prefix.add(p.as_bytes(), c)
            }
            Rule::Suffix(p) => {
                ix.has_strings = true;
                ix.suffix.add(p.as_bytes(), c)
            }
            Rule::EqualsIgnoreCase(p) => {
                ix.has_strings = true;
                ix.fold.entry(p.into_bytes().into()).or_default().push(c)
            }
            Rule::Wildcard(w) => {
                ix.has_strings = true;
                let wid = self.wildcards.len() as u32;
                match wild_anchor(&w) {
                    WildAnchor::Prefix(p) => ix.wild_prefix.add(p.as_bytes(), (wid, c)),
                    WildAnchor::Suffix(p) => ix.wild_suffix.add(p.as_bytes(), (wid, c)),
                    WildAnchor::None => ix.wild_any.push((wid, c)),
                }
                self.wildcards.push(w);
            }
            Rule::Numeric(range) => ix.ranges.push((range, c)),
            Rule::Cidr(net) => {
                ix.has_strings = true;
                ix.cidrs.push((net, c))
            }
            Rule::Exists(true) => ix.exists.push(c),
            Rule::Exists(false) | Rule::AnythingBut(_) => unreachable!("never an anchor"),
        }
    }
}

impl PathIndex {
    /// Takes conjunction `c` out of the bucket of its anchor rule `r`.
    fn remove(&mut self, r: &Rule, c: u32) {
        let is_c = |&x: &u32| x == c;
        let wild_is_c = |&(_, x): &(u32, u32)| x == c;
        match r {
            Rule::Exact(Literal::Str(s)) => drop_from(&mut self.exact, s.as_bytes(), is_c),
            Rule::Exact(Literal::Num(k)) => drop_from(&mut self.num, &number::key_bits(*k), is_c),
            Rule::Exact(Literal::Bool(true)) => self.bool_true.retain(|x| !is_c(x)),
            Rule::Exact(Literal::Bool(false)) => self.bool_false.retain(|x| !is_c(x)),
            Rule::Exact(Literal::Null) => self.null.retain(|x| !is_c(x)),
            Rule::Prefix(p) => self.prefix.remove(p.as_bytes(), is_c),
            Rule::Suffix(p) => self.suffix.remove(p.as_bytes(), is_c),
            Rule::EqualsIgnoreCase(p) => drop_from(&mut self.fold, p.as_bytes(), is_c),
            Rule::Wildcard(w) => match wild_anchor(w) {
                WildAnchor::Prefix(p) => self.wild_prefix.remove(p.as_bytes(), wild_is_c),
                WildAnchor::Suffix(p) => self.wild_suffix.remove(p.as_bytes(), wild_is_c),
                WildAnchor::None => self.wild_any.retain(|x| !wild_is_c(x)),
            },
            Rule::Numeric(_) => self.ranges.retain(|&(_, x)| x != c),
            Rule::Cidr(_) => self.cidrs.retain(|&(_, x)| x != c),
            Rule::Exists(true) => self.exists.retain(|x| !is_c(x)),
            Rule::Exists(false) | Rule::AnythingBut(_) => unreachable!("never an anchor"),
        }
    }
}

/// Removes what `gone` picks from the list under `key`, and the list once empty.
fn drop_from<K, Q, T>(map: &mut HashMap<K, Vec<T>>, key: &Q, gone: impl Fn(&T) -> bool)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(list) = map.get_mut(key) {
        list.retain(|x| !gone(x));
        if list.is_empty() {
            map.remove(key);
        }
    }
}

/// The buckets of a slot when every rule of it can be indexed (so it can be an anchor).
fn slot_buckets(pid: u32, rules: &[Rule]) -> Option<Vec<Bucket>> {
    rules.iter().map(|r| rule_bucket(pid, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Affixes of every length up to past the integer keys, probed with values shorter and
    /// longer than eight bytes: the buckets found are exactly the affixes of the value.
    #[test]
    fn affix_probe_finds_exactly_the_affixes() {
        let keys = [
            "",
            "a",
            "ab",
            "abc",
            "é",
            "abcdefg",
            "abcdefgh",
            "abcdefghij",
            "ghij",
            "hij",
        ];
        let values = [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefghij",
            "xabcdefghij",
            "é",
            "aé",
        ];
        for suffix in [false, true] {
            let mut a = Affix::default();
            for (i, k) in keys.iter().enumerate() {
                a.add(k.as_bytes(), i);
            }
            for v in values {
                let mut got = Vec::new();
                a.probe(v.as_bytes(), suffix, |&i| got.push(i));
                got.sort_unstable();
                let want: Vec<usize> = (0..keys.len())
                    .filter(|&i| {
                        if suffix {
                            v.ends_with(keys[i])
                        } else {
                            v.starts_with(keys[i])
                        }
                    })
                    .collect();
                assert_eq!(got, want, "{v:?} suffix {suffix}");
            }
        }
    }
}
