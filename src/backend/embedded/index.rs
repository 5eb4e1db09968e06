//! The in-memory index of one queue: which messages exist, which are visible, in flight or
//! delayed, and which FIFO groups are locked.
//!
//! Pure bookkeeping with the clock passed in, so SQS semantics (visibility, delay, receive
//! counts, FIFO group locking, retention) are unit-tested without storage or sleeping. Only
//! small per-message metadata lives here; bodies stay on disk.
//!
//! A standard queue keeps the entries of at most a bound of visible messages; past it,
//! the visible messages that arrive are *spilled*: only their sequence numbers stay, as
//! bits, and their entries are read back from storage (a page) when the visible ones in
//! memory run low. So a backlog's memory does not grow with its entries, and a receive
//! costs the same at any depth. Spilled messages are newer than every visible one in
//! memory, which keeps a deep queue roughly oldest-first, as SQS's standard queues are.

use super::seqmap::{SeqMap, SeqSet};
use crate::backend::Counts;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::num::NonZeroU64;
use std::sync::Arc;

/// What the index keeps per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the message was first stored (unix ms); retention counts from here.
    pub sent_at: u64,
    /// Before this instant (unix ms) the message is delayed or in flight.
    pub visible_at: u64,
    /// Receives so far. Also the receipt generation: a receipt names the count it was
    /// issued at, so a receipt from before the latest receive is stale.
    pub receive_count: u32,
    /// Whether the message is visible, delayed or in flight.
    pub state: MsgState,
    /// FIFO message group.
    pub group: Option<Arc<str>>,
    /// For a message moved to a dead-letter queue: the queue id it came from (queue ids
    /// start at 1; non-zero keeps an entry as small as it was before `shared`, which
    /// counts with a million messages backlogged).
    pub origin: Option<NonZeroU64>,
    /// The shared body the message carries, if it has none of its own.
    pub shared: Option<NonZeroU64>,
    /// When it was first received (unix ms); 0 until then.
    pub first_received_at: u64,
}

impl Entry {
    /// Counts a receive at `now`.
    fn received(&mut self, now: u64) {
        if self.receive_count == 0 {
            self.first_received_at = now;
        }
        self.receive_count += 1;
    }
}

/// Where a message stands. `visible_at` says until when a non-visible message waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgState {
    Visible,
    /// Not yet visible for the first time (queue or per-message delay).
    Delayed,
    /// Received and not yet acknowledged or visible again.
    InFlight,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptProblem {
    /// The message is gone (acknowledged, expired, purged or moved).
    Gone,
    /// The message was received again since this receipt was issued.
    Stale,
}

#[derive(Debug, Default)]
struct Group {
    seqs: BTreeSet<u64>,
    /// Messages of this group in flight; while non-zero the group is locked.
    in_flight: u32,
    /// The key under which the group sits in `QueueIndex::open_groups`, if it does.
    open_key: Option<u64>,
}

#[derive(Debug)]
pub struct QueueIndex {
    fifo: bool,
    /// Chunked rather than a B-tree per message: sequences arrive in order, which would
    /// leave a B-tree's nodes half full, and this is most of the index's memory.
    entries: SeqMap<Entry>,
    /// Standard queues: messages visible now, oldest first.
    ready: SeqSet,
    /// Delayed and in-flight messages by the instant they become visible. Entries whose
    /// message has since changed are skipped when popped (lazy deletion).
    timers: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// FIFO queues: groups by message group id.
    groups: HashMap<Arc<str>, Group>,
    /// FIFO queues: unlocked, non-empty groups by the sequence of their oldest message.
    open_groups: BTreeSet<(u64, Arc<str>)>,
    in_flight: u64,
    delayed: u64,
    /// Visible messages kept in memory before new ones are spilled (standard queues).
    resident: usize,
    /// Visible messages whose entries are in storage only.
    spilled: SeqSet,
    spilled_len: u64,
    /// Spilled messages being read back by a [`Page`].
    paging: u64,
    /// Changes when the queue is purged, so a page read before is not put back.
    generation: u64,
}

/// Spilled messages to read back from storage and hand to [`QueueIndex::paged_in`].
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Ascending.
    pub seqs: Vec<u64>,
    generation: u64,
}

/// Visible messages a standard queue keeps in memory: a page read back is at least half
/// of them (at most one receive of ten in 800 waits for one), and the entries of this
/// many cost about a megabyte.
pub const RESIDENT_VISIBLE: usize = 16 * 1024;

impl QueueIndex {
    #[cfg(test)]
    pub fn new(fifo: bool) -> Self {
        Self::with_resident(fifo, RESIDENT_VISIBLE)
    }

    /// An index keeping at most `resident` visible messages in memory (at least 2; FIFO
    /// queues keep every message: a group's order is read from memory).
    pub fn with_resident(fifo: bool, resident: usize) -> Self {
        Self {
            fifo,
            entries: SeqMap::new(),
            ready: SeqSet::new(),
            timers: BinaryHeap::new(),
            groups: HashMap::new(),
            open_groups: BTreeSet::new(),
            in_flight: 0,
            delayed: 0,
            resident: if fifo { usize::MAX } else { resident.max(2) },
            spilled: SeqSet::new(),
            spilled_len: 0,
            paging: 0,
            generation: 0,
        }
    }

    /// Adds a message (new, or recovered from storage). Its state is derived: waiting
    /// until a future `visible_at` means in flight once received, delayed before. A
    /// visible one is spilled when the queue holds its bound, or has spilled messages
    /// (which are older).
    pub fn insert(&mut self, seq: u64, entry: Entry, now: u64) {
        let visible = entry.visible_at <= now;
        if visible
            && (self.spilled_len > 0 || self.visible_in_memory() >= self.resident)
            && self.entries.get(seq).is_none()
        {
            if self.spilled.insert(seq) {
                self.spilled_len += 1;
            }
            return;
        }
        self.insert_resident(seq, entry, now);
    }

    /// The spilled messages to read back now, if the visible ones in memory ran low and
    /// no other page is being read.
    pub fn page_to_read(&mut self) -> Option<Page> {
        if self.spilled_len == 0 || self.paging > 0 || self.visible_in_memory() > self.resident / 2
        {
            return None;
        }
        let n = self.resident - self.visible_in_memory();
        let seqs: Vec<u64> = std::iter::from_fn(|| self.spilled.pop_first())
            .take(n)
            .collect();
        self.spilled_len -= seqs.len() as u64;
        self.paging = seqs.len() as u64;
        Some(Page {
            seqs,
            generation: self.generation,
        })
    }

    /// Puts a page's messages back in memory, as read from storage (any it misses are
    /// gone); a page read before a purge is dropped.
    pub fn paged_in(&mut self, page: &Page, read: Vec<(u64, Entry)>, now: u64) {
        if page.generation != self.generation {
            return;
        }
        self.paging = 0;
        for (seq, entry) in read {
            self.insert_resident(seq, entry, now);
        }
    }

    /// The oldest spilled message, unless a page is being read (which may hold older
    /// ones): where retention looks first.
    pub fn first_spilled(&self) -> Option<u64> {
        if self.paging > 0 {
            return None;
        }
        self.spilled.first()
    }

    /// Forgets spilled messages past retention, as read from storage; returns those that
    /// were still spilled (none while a page is being read, which may hold them).
    pub fn expire_spilled(&mut self, seqs: &[u64]) -> Vec<u64> {
        if self.paging > 0 {
            return Vec::new();
        }
        let gone: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&s| self.spilled.remove(s))
            .collect();
        self.spilled_len -= gone.len() as u64;
        gone
    }

    /// A page could not be read: its messages stay spilled, to be read again.
    pub fn page_failed(&mut self, page: Page) {
        if page.generation != self.generation {
            return;
        }
        self.paging = 0;
        for seq in page.seqs {
            if self.spilled.insert(seq) {
                self.spilled_len += 1;
            }
        }
    }

    /// Visible messages with their entries in memory (as of the last promotion).
    fn visible_in_memory(&self) -> usize {
        self.entries.len() - (self.in_flight + self.delayed) as usize
    }

    fn insert_resident(&mut self, seq: u64, mut entry: Entry, now: u64) {
        entry.state = if entry.visible_at <= now {
            MsgState::Visible
        } else if entry.receive_count > 0 {
            MsgState::InFlight
        } else {
            MsgState::Delayed
        };
        match entry.state {
            MsgState::Visible => {}
            MsgState::Delayed => self.delayed += 1,
            MsgState::InFlight => self.in_flight += 1,
        }
        if entry.state != MsgState::Visible {
            self.timers
                .push(Reverse((entry.visible_at, seq, entry.receive_count)));
        }
        let state = entry.state;
        let group = entry.group.clone();
        self.entries.insert(seq, entry);
        match group {
            Some(g) if self.fifo => {
                let grp = self.groups.entry(g.clone()).or_default();
                grp.seqs.insert(seq);
                if state == MsgState::InFlight {
                    grp.in_flight += 1;
                }
                self.reopen(&g);
            }
            _ => {
                if state == MsgState::Visible {
                    self.ready.insert(seq);
                }
            }
        }
    }

    /// Makes every message whose delay or visibility timeout has passed visible.
    pub fn promote(&mut self, now: u64) {
        while let Some(Reverse((at, seq, rc))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.entries.get_mut(seq) else {
                continue;
            };
            if e.visible_at != at || e.receive_count != rc || e.state == MsgState::Visible {
                continue;
            }
            let was = e.state;
            e.state = MsgState::Visible;
            match was {
                MsgState::InFlight => self.in_flight -= 1,
                _ => self.delayed -= 1,
            }
            match e.group.clone() {
                Some(g) if self.fifo => {
                    if was == MsgState::InFlight
                        && let Some(grp) = self.groups.get_mut(&g)
                    {
                        grp.in_flight -= 1;
                    }
                    self.reopen(&g);
                }
                _ => {
                    self.ready.insert(seq);
                }
            }
        }
    }

    /// The earliest instant a delayed or in-flight message becomes visible.
    pub fn next_due(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Receives up to `max` visible messages, making each invisible until `now +
    /// visibility_ms`. With `max_receive_count`, messages already received that often are
    /// taken out for the dead-letter queue instead.
    pub fn take(&mut self, now: u64, max: usize, visibility_ms: u64) -> Vec<(u64, Entry)> {
        self.promote(now);
        let mut taken = Vec::new();
        if self.fifo {
            self.take_fifo(now, max, visibility_ms, &mut taken);
        } else {
            while taken.len() < max {
                let Some(seq) = self.ready.pop_first() else {
                    break;
                };
                let e = self.entries.get_mut(seq).expect("ready holds live seqs");
                e.received(now);
                e.visible_at = now + visibility_ms;
                e.state = MsgState::InFlight;
                self.in_flight += 1;
                self.timers
                    .push(Reverse((e.visible_at, seq, e.receive_count)));
                taken.push((seq, e.clone()));
            }
        }
        taken
    }

    fn take_fifo(
        &mut self,
        now: u64,
        max: usize,
        visibility_ms: u64,
        taken: &mut Vec<(u64, Entry)>,
    ) {
        // Groups taken from are locked at the end so each is visited once per receive.
        let mut touched: Vec<Arc<str>> = Vec::new();
        let mut cursor = self.open_groups.iter().next().cloned();
        while let Some(key) = cursor {
            if taken.len() >= max {
                break;
            }
            cursor = self
                .open_groups
                .range((
                    std::ops::Bound::Excluded(key.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .cloned();
            let g = key.1.clone();
            let mut took_any = false;
            // Walks the group one message at a time rather than copying its list: a group
            // can hold most of a large backlog, and a receive takes at most ten of it.
            let mut next = self.groups[&g].seqs.first().copied();
            while let Some(seq) = next {
                if taken.len() >= max {
                    break;
                }
                next = self.groups[&g]
                    .seqs
                    .range((std::ops::Bound::Excluded(seq), std::ops::Bound::Unbounded))
                    .next()
                    .copied();
                let e = self.entries.get_mut(seq).expect("groups hold live seqs");
                if e.state != MsgState::Visible {
                    // Order within a group: nothing after a message that is not available.
                    break;
                }
                e.received(now);
                e.visible_at = now + visibility_ms;
                e.state = MsgState::InFlight;
                self.in_flight += 1;
                self.timers
                    .push(Reverse((e.visible_at, seq, e.receive_count)));
                taken.push((seq, e.clone()));
                self.groups.get_mut(&g).expect("group exists").in_flight += 1;
                took_any = true;
            }
            if took_any || self.groups[&g].seqs.is_empty() {
                touched.push(g);
            }
        }
        for g in touched {
            self.reopen(&g);
        }
    }

    /// Re-files a FIFO group in `open_groups` after its head or lock changed.
    fn reopen(&mut self, g: &Arc<str>) {
        let Some(grp) = self.groups.get_mut(g) else {
            return;
        };
        if let Some(k) = grp.open_key.take() {
            self.open_groups.remove(&(k, g.clone()));
        }
        if grp.seqs.is_empty() && grp.in_flight == 0 {
            self.groups.remove(g);
            return;
        }
        if grp.in_flight == 0
            && let Some(&head) = grp.seqs.first()
        {
            grp.open_key = Some(head);
            self.open_groups.insert((head, g.clone()));
        }
    }

    /// Checks that `receipt_count` is the current receipt of message `seq`.
    pub fn check_receipt(&self, seq: u64, receipt_count: u32) -> Result<&Entry, ReceiptProblem> {
        let e = self.entries.get(seq).ok_or(ReceiptProblem::Gone)?;
        if e.receive_count != receipt_count {
            return Err(ReceiptProblem::Stale);
        }
        Ok(e)
    }

    /// Deletes a received message by its receipt.
    pub fn ack(&mut self, seq: u64, receipt_count: u32) -> Result<Entry, ReceiptProblem> {
        self.check_receipt(seq, receipt_count)?;
        Ok(self.remove(seq).expect("checked above"))
    }

    /// Changes how long a received message stays invisible, counted from `now`.
    pub fn change_visibility(
        &mut self,
        seq: u64,
        receipt_count: u32,
        now: u64,
        visibility_ms: u64,
    ) -> Result<Entry, ReceiptProblem> {
        self.promote(now);
        self.check_receipt(seq, receipt_count)?;
        let e = self.entries.get_mut(seq).expect("checked above");
        if e.state != MsgState::InFlight {
            // SQS refuses this too: the message is visible again, the receipt has lapsed.
            return Err(ReceiptProblem::Stale);
        }
        e.visible_at = now + visibility_ms;
        self.timers
            .push(Reverse((e.visible_at, seq, e.receive_count)));
        let e = e.clone();
        self.promote(now);
        Ok(e)
    }

    /// Removes one message whatever its state; a spilled one is forgotten and `None`
    /// returned.
    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        let Some(e) = self.entries.remove(seq) else {
            if self.spilled.remove(seq) {
                self.spilled_len -= 1;
            }
            return None;
        };
        match e.state {
            MsgState::Visible => {
                self.ready.remove(seq);
            }
            // Its timer is skipped when popped.
            MsgState::Delayed => self.delayed -= 1,
            MsgState::InFlight => self.in_flight -= 1,
        }
        if let Some(g) = &e.group
            && self.fifo
        {
            if let Some(grp) = self.groups.get_mut(g) {
                grp.seqs.remove(&seq);
                if e.state == MsgState::InFlight {
                    grp.in_flight -= 1;
                }
            }
            self.reopen(g);
        }
        Some(e)
    }

    /// Removes and returns messages older than `retention_ms`, oldest first.
    pub fn expire(&mut self, now: u64, retention_ms: u64) -> Vec<(u64, Entry)> {
        let mut out = Vec::new();
        while let Some((seq, e)) = self.entries.first_key_value() {
            if e.sent_at.saturating_add(retention_ms) > now {
                break;
            }
            let e = self.remove(seq).expect("the first entry exists");
            out.push((seq, e));
        }
        out
    }

    /// Removes every message: returns those in memory, and the spilled ones' sequence
    /// numbers (their entries are in storage only). A page being read is dropped when it
    /// comes back.
    pub fn purge(&mut self) -> (Vec<(u64, Entry)>, Vec<u64>) {
        let fresh = Self {
            generation: self.generation + 1,
            ..Self::with_resident(self.fifo, self.resident)
        };
        let old = std::mem::replace(self, fresh);
        let entries = old
            .entries
            .iter()
            .map(|(seq, e)| (seq, e.clone()))
            .collect();
        (entries, old.spilled.iter().collect())
    }

    /// Every message, oldest first (for moving a dead-letter queue back).
    pub fn counts(&mut self, now: u64) -> Counts {
        self.promote(now);
        let total = self.entries.len() as u64;
        Counts {
            visible: total - self.in_flight - self.delayed + self.spilled_len + self.paging,
            in_flight: self.in_flight,
            delayed: self.delayed,
            // Sequences follow sends, so the first entry is the oldest; a message moved
            // back from a dead-letter queue keeps its older send time, which makes this an
            // approximation, as SQS's own age of the oldest message is.
            oldest_sent_at: self.entries.first_key_value().map(|(_, e)| e.sent_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_stays_small() {
        // A million backlogged messages hold a million entries (with the chunk slots
        // around them); the RSS target for that backlog has room for little more.
        assert!(std::mem::size_of::<Entry>() <= 64);
    }

    fn entry(sent_at: u64, visible_at: u64, group: Option<&str>) -> Entry {
        Entry {
            sent_at,
            visible_at,
            receive_count: 0,
            state: MsgState::Visible,
            group: group.map(Arc::from),
            origin: None,
            shared: None,
            first_received_at: 0,
        }
    }

    fn seqs(t: &[(u64, Entry)]) -> Vec<u64> {
        t.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn received_message_is_invisible_until_its_timeout() {
        let mut q = QueueIndex::new(false);
        q.insert(1, entry(0, 0, None), 0);
        assert_eq!(seqs(&q.take(0, 10, 30)), [1]);
        assert!(q.take(29, 10, 30).is_empty());
        let again = q.take(30, 10, 30);
        assert_eq!(seqs(&again), [1]);
        assert_eq!(again[0].1.receive_count, 2);
    }

    #[test]
    fn delayed_message_appears_after_its_delay() {
        let mut q = QueueIndex::new(false);
        q.insert(1, entry(0, 100, None), 0);
        assert_eq!(
            q.counts(0),
            Counts {
                visible: 0,
                in_flight: 0,
                delayed: 1,
                oldest_sent_at: Some(0),
            }
        );
        assert!(q.take(99, 10, 30).is_empty());
        assert_eq!(seqs(&q.take(100, 10, 30)), [1]);
        assert_eq!(
            q.counts(100),
            Counts {
                visible: 0,
                in_flight: 1,
                delayed: 0,
                oldest_sent_at: Some(0),
            }
        );
    }

    #[test]
    fn stale_receipt_is_refused_after_a_new_receive() {
        let mut q = QueueIndex::new(false);
        q.insert(1, entry(0, 0, None), 0);
        q.take(0, 1, 10);
        q.take(10, 1, 10);
        assert_eq!(q.ack(1, 1), Err(ReceiptProblem::Stale));
        assert!(q.ack(1, 2).is_ok());
        assert_eq!(q.ack(1, 2), Err(ReceiptProblem::Gone));
        assert_eq!(q.counts(10), Counts::default());
    }

    #[test]
    fn the_first_receive_is_remembered_through_later_ones() {
        for fifo in [false, true] {
            let mut q = QueueIndex::new(fifo);
            q.insert(1, entry(0, 0, Some("g")), 0);
            assert_eq!(q.take(5, 1, 10)[0].1.first_received_at, 5);
            let again = q.take(15, 1, 10);
            assert_eq!(
                (again[0].1.receive_count, again[0].1.first_received_at),
                (2, 5)
            );
        }
    }

    /// A standard queue keeping `resident` visible messages in memory, sent messages 1 to
    /// `n` (visible at once), and what storage holds of them.
    fn spilling(resident: usize, n: u64) -> (QueueIndex, HashMap<u64, Entry>) {
        let mut q = QueueIndex::with_resident(false, resident);
        let stored: HashMap<u64, Entry> = (1..=n).map(|s| (s, entry(s, 0, None))).collect();
        for s in 1..=n {
            q.insert(s, stored[&s].clone(), 0);
        }
        (q, stored)
    }

    /// Reads a page back as storage would: the entries of its messages, as stored.
    fn read(page: &Page, stored: &HashMap<u64, Entry>) -> Vec<(u64, Entry)> {
        page.seqs.iter().map(|s| (*s, stored[s].clone())).collect()
    }

    #[test]
    fn past_its_bound_a_queue_spills_and_reads_back_in_order() {
        let (mut q, mut stored) = spilling(4, 10);
        stored.insert(11, entry(11, 0, None));
        assert_eq!(q.entries.len(), 4, "only the bound in memory");
        assert_eq!(q.counts(0).visible, 10, "spilled messages count as visible");
        assert_eq!(
            q.page_to_read(),
            None,
            "nothing to read while the bound is full"
        );
        let mut got = seqs(&q.take(0, 3, 10));
        // A message arriving while some are spilled is spilled too: it is the newest.
        q.insert(11, stored[&11].clone(), 0);
        let page = q.page_to_read().expect("one left in memory: read more");
        assert_eq!(page.seqs, vec![5, 6, 7]);
        assert_eq!(q.page_to_read(), None, "one page at a time");
        assert_eq!(
            q.counts(0).visible,
            1 + 3 + 4,
            "in memory, being read and spilled"
        );
        q.paged_in(&page, read(&page, &stored), 0);
        loop {
            got.extend(seqs(&q.take(0, 2, 10)));
            let Some(page) = q.page_to_read() else {
                break;
            };
            q.paged_in(&page, read(&page, &stored), 0);
        }
        got.extend(seqs(&q.take(0, 10, 10)));
        assert_eq!(
            got,
            (1..=11).collect::<Vec<_>>(),
            "every message once, oldest first"
        );
        let c = q.counts(0);
        assert_eq!((c.visible, c.in_flight), (0, 11));
    }

    #[test]
    fn delayed_and_received_messages_stay_in_memory_past_the_bound() {
        let mut q = QueueIndex::with_resident(false, 2);
        for s in 1..=3 {
            q.insert(s, entry(0, 0, None), 0);
        }
        q.insert(4, entry(0, 50, None), 0);
        let received = Entry {
            receive_count: 1,
            ..entry(0, 60, None)
        };
        q.insert(5, received, 0);
        assert_eq!(
            q.entries.len(),
            4,
            "two visible, one delayed, one in flight"
        );
        let c = q.counts(0);
        assert_eq!((c.visible, c.delayed, c.in_flight), (3, 1, 1));
        assert_eq!(q.check_receipt(5, 1).map(|e| e.receive_count), Ok(1));
    }

    #[test]
    fn a_purge_drops_spilled_messages_and_the_page_read_before_it() {
        let (mut q, stored) = spilling(2, 6);
        q.take(0, 2, 10);
        let page = q.page_to_read().unwrap();
        assert_eq!(page.seqs, vec![3, 4]);
        let (gone, spilled) = q.purge();
        assert_eq!((seqs(&gone), spilled), (vec![1, 2], vec![5, 6]));
        q.paged_in(&page, read(&page, &stored), 0);
        assert_eq!(
            q.counts(0),
            Counts::default(),
            "the page was read before the purge"
        );
        // The bound holds after a purge.
        for s in 7..=9 {
            q.insert(s, entry(s, 0, None), 0);
        }
        assert_eq!(q.entries.len(), 2);
    }

    #[test]
    fn a_page_that_failed_is_read_again_and_a_removed_spill_is_forgotten() {
        let (mut q, _) = spilling(2, 5);
        q.take(0, 2, 10);
        let page = q.page_to_read().unwrap();
        q.page_failed(page);
        assert_eq!(q.remove(5), None, "a spilled message is not in memory");
        assert_eq!(q.counts(0).visible, 2);
        assert_eq!(q.page_to_read().unwrap().seqs, vec![3, 4]);
    }

    #[test]
    fn spilled_messages_past_retention_are_forgotten_unless_a_page_is_being_read() {
        let (mut q, _) = spilling(2, 6);
        assert_eq!(q.first_spilled(), Some(3));
        // 2 is in memory: retention in memory takes it.
        assert_eq!(q.expire_spilled(&[2, 3, 4]), vec![3, 4]);
        assert_eq!(q.counts(0).visible, 4);
        q.take(0, 2, 10);
        let page = q.page_to_read().unwrap();
        assert_eq!(q.first_spilled(), None);
        assert!(q.expire_spilled(&[6]).is_empty());
        q.page_failed(page);
        assert_eq!(q.first_spilled(), Some(5));
    }

    #[test]
    fn fifo_queues_keep_every_message_in_memory() {
        let mut q = QueueIndex::with_resident(true, 2);
        for s in 1..=5 {
            q.insert(s, entry(s, 0, Some("g")), 0);
        }
        assert_eq!(q.entries.len(), 5);
        assert_eq!(q.page_to_read(), None);
    }

    #[test]
    fn visibility_zero_makes_message_visible_at_once() {
        let mut q = QueueIndex::new(false);
        q.insert(1, entry(0, 0, None), 0);
        q.take(0, 1, 1000);
        q.change_visibility(1, 1, 5, 0).unwrap();
        assert_eq!(seqs(&q.take(5, 1, 1000)), [1]);
    }

    #[test]
    fn fifo_group_is_locked_while_a_batch_is_in_flight() {
        let mut q = QueueIndex::new(true);
        for s in 1..=3 {
            q.insert(s, entry(0, 0, Some("a")), 0);
        }
        q.insert(4, entry(0, 0, Some("b")), 0);
        assert_eq!(seqs(&q.take(0, 2, 10)), [1, 2]);
        // Group a is locked; only b is available.
        assert_eq!(seqs(&q.take(0, 10, 10)), [4]);
        assert!(q.take(0, 10, 10).is_empty());
        q.ack(1, 1).unwrap();
        assert!(q.take(0, 10, 10).is_empty());
        q.ack(2, 1).unwrap();
        assert_eq!(seqs(&q.take(0, 10, 10)), [3]);
    }

    #[test]
    fn fifo_expired_batch_is_redelivered_in_order() {
        let mut q = QueueIndex::new(true);
        for s in 1..=3 {
            q.insert(s, entry(0, 0, Some("a")), 0);
        }
        assert_eq!(seqs(&q.take(0, 2, 10)), [1, 2]);
        assert_eq!(seqs(&q.take(10, 10, 10)), [1, 2, 3]);
    }

    #[test]
    fn retention_removes_oldest_messages_in_any_state() {
        let mut q = QueueIndex::new(false);
        q.insert(1, entry(0, 0, None), 0);
        q.insert(2, entry(5, 50, None), 5);
        q.insert(3, entry(20, 20, None), 20);
        q.take(20, 1, 100);
        let expired: Vec<u64> = q.expire(26, 20).into_iter().map(|(s, _)| s).collect();
        assert_eq!(expired, [1, 2]);
        assert_eq!(
            q.counts(26),
            Counts {
                visible: 1,
                in_flight: 0,
                delayed: 0,
                oldest_sent_at: Some(20),
            }
        );
    }

    #[test]
    fn recovered_in_flight_message_stays_invisible() {
        let mut q = QueueIndex::new(false);
        let mut e = entry(0, 100, None);
        e.receive_count = 1;
        q.insert(1, e, 50);
        assert_eq!(q.counts(50).in_flight, 1);
        assert!(q.take(50, 1, 10).is_empty());
        assert_eq!(q.take(100, 1, 10)[0].1.receive_count, 2);
    }
}
