//! Raw-byte JSON for the publish path: a fast scanner that walks only the parts of a body
//! some policy looks at and skips the rest (64 bytes at a time, see `structural`), and a
//! strict validator that accepts exactly what `serde_json` accepts (the common shapes are
//! vouched for by the block validator in `structural`, the rest is checked byte by byte).
//!
//! The scanner is strict about what it reads (an error means "not JSON") and does not look
//! into what it skips; it records the skipped objects and arrays, and the matcher has those
//! validated (`Scanner::body_is_valid`) before it reports any body-scope match. So an
//! invalid body matches nothing, and bodies that match nothing never pay for validation.
//! The scanner is exact on valid JSON, and on any input it terminates without panicking.
//!
//! It never stops early, even once every path a policy uses has been seen: a repeated key
//! or a dotted key (`"a.b"` is the path `a` → `b`) later in the body can still add a value.

/// `f64::MAX` has 309 integer digits; anything shorter (sign included) is finite.
const F64_MAX_INT_DIGITS: usize = 308;

/// Deepest nesting `serde_json` accepts (its recursion limit is 128 levels, exclusive).
pub const MAX_DEPTH: usize = 127;

/// A scalar value found at a path some policy uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ScanLeaf<'a> {
    Str(&'a [u8]),
    /// The number as parsed (not yet a comparison key).
    Num(f64),
    Bool(bool),
    Null,
}

/// Which paths the scanner descends into: a trie over key segments (keys split at `.`).
pub(crate) trait PathTrie {
    /// The child of `node` reached by the key `key` (already unescaped), or `None` if no
    /// policy path continues that way. A key containing `.` walks several segments.
    fn child(&self, node: u32, key: &[u8]) -> Option<u32>;
    /// Whether any policy path continues below `node` (objects there are worth entering).
    fn has_children(&self, node: u32) -> bool;
    /// The path id a leaf at `node` is recorded under, if a policy tests this exact path.
    fn leaf(&self, node: u32) -> Option<u32>;
}

/// The scanner could not make sense of the body (it is not valid JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

type R<T> = Result<T, Malformed>;

pub(crate) struct Scanner<'a, 't, T: PathTrie> {
    b: &'a [u8],
    i: usize,
    trie: &'t T,
    /// Unescaped key or string (only when the raw text has escapes).
    tmp: Vec<u8>,
    /// The objects and arrays passed over without looking inside, as byte ranges.
    skipped: Vec<(u32, u32)>,
    /// Something was passed over that the checks of `body_is_valid` cannot vouch for.
    unsure: bool,
    /// The body passed `serde_json`'s `RawValue` check and blocks are skipped with
    /// `structural::skip_block_checked`.
    check_while_skipping: bool,
    /// A skipped block may hold what a `RawValue` check allows and a `Value` parse refuses.
    raw_unsure: bool,
    /// The most containers around a skipped block.
    skip_depth: usize,
}

impl<'a, 't, T: PathTrie> Scanner<'a, 't, T> {
    /// `buffers`: reusable (unescape, skipped ranges) buffers, see `into_buffers`.
    /// `check_while_skipping`: `b` passed `serde_json`'s `RawValue` check, and
    /// [`Scanner::raw_body_is_valid`] will be asked (likely enough to do its work now).
    pub(crate) fn new(
        b: &'a [u8],
        trie: &'t T,
        buffers: (Vec<u8>, Vec<(u32, u32)>),
        check_while_skipping: bool,
    ) -> Self {
        let (tmp, mut skipped) = buffers;
        skipped.clear();
        Scanner {
            b,
            i: 0,
            trie,
            tmp,
            skipped,
            unsure: b.len() > u32::MAX as usize,
            check_while_skipping,
            raw_unsure: b.len() > u32::MAX as usize,
            skip_depth: 0,
        }
    }

    /// Give back the reusable buffers.
    pub(crate) fn into_buffers(self) -> (Vec<u8>, Vec<(u32, u32)>) {
        (self.tmp, self.skipped)
    }

    /// After `scan_body` returned `Ok(true)`: whether the body is valid JSON, as
    /// [`validate`] judges it, but checking only what the scan passed over. The scan itself
    /// is strict about everything it reads (structure, strings with their escapes, control
    /// characters and UTF-8, numbers and literals), so what is left are the skipped objects
    /// and arrays; those go to the block validator, and when it cannot vouch for one, the
    /// whole body goes to [`validate`].
    pub(crate) fn body_is_valid(&self) -> bool {
        if !self.unsure
            && self
                .skipped
                .iter()
                .all(|&(s, e)| crate::structural::accepts(&self.b[s as usize..e as usize]))
        {
            return true;
        }
        validate(self.b)
    }

    /// [`Scanner::body_is_valid`] for a body that passed `serde_json`'s `RawValue` check
    /// (see `Matcher::matches_valid_json`): of the skipped blocks only what that check lets
    /// through and a `Value` parse refuses needs looking for, as they were skipped (with
    /// `check_while_skipping`) or now, skipping them again the checking way
    /// (`structural::skip_block_checked`). Only if a block may hold some is the body
    /// validated.
    pub(crate) fn raw_body_is_valid(&self) -> bool {
        let sure = if self.check_while_skipping {
            !self.raw_unsure
        } else {
            self.b.len() <= u32::MAX as usize
                && self.skipped.iter().all(|&(s, e)| {
                    crate::structural::skip_block_checked(self.b, s as usize).is_some_and(
                        |(end, peak)| {
                            end == e as usize
                                && peak.is_some_and(|p| self.skip_depth + p as usize <= MAX_DEPTH)
                        },
                    )
                })
        };
        sure || self.body_is_valid()
    }

    #[inline(always)]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(Malformed)
    }

    #[inline(always)]
    fn ws(&mut self) {
        while self.i < self.b.len() && crate::structural::is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Scan a whole body whose top level must be an object. Calls `sink(path, leaf)` for
    /// every scalar at a path some policy tests. `Ok(false)` when the body is valid-looking
    /// JSON but not an object.
    pub(crate) fn scan_body(
        &mut self,
        root: u32,
        sink: &mut impl FnMut(u32, ScanLeaf<'_>),
    ) -> R<bool> {
        self.ws();
        if self.peek()? != b'{' {
            return Ok(false);
        }
        self.object(root, 1, sink)?;
        self.ws();
        if self.i != self.b.len() {
            return Err(Malformed);
        }
        Ok(true)
    }

    /// Read a string starting at the opening quote; returns its raw content range and
    /// whether it has escapes. Leaves `i` after the closing quote.
    ///
    /// Strict: a control character, a malformed escape or invalid UTF-8 is an error (the
    /// body is not JSON, so it matches nothing), which lets `body_is_valid` trust every
    /// string the scan has read.
    #[inline(always)]
    fn raw_string(&mut self) -> R<(usize, usize, bool)> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            let at = string_stop(self.b, j).ok_or(Malformed)?;
            match self.b[at] {
                b'"' => {
                    self.i = at + 1;
                    return Ok((start, at, escaped));
                }
                b'\\' => {
                    escaped = true;
                    j = self.escape(at)?;
                }
                c if c < 0x20 => return Err(Malformed),
                _ => return self.raw_string_non_ascii(start, at, escaped),
            }
        }
    }

    /// The rest of a string from its first non-ASCII byte at `at`: find the end, then
    /// check the whole content for control characters and UTF-8.
    #[cold]
    fn raw_string_non_ascii(
        &mut self,
        start: usize,
        at: usize,
        escaped: bool,
    ) -> R<(usize, usize, bool)> {
        let mut j = at;
        let mut escaped = escaped;
        loop {
            let k = j + memchr::memchr2(b'"', b'\\', self.b.get(j..).ok_or(Malformed)?)
                .ok_or(Malformed)?;
            if self.b[k] == b'"' {
                let content = &self.b[start..k];
                if content.iter().any(|&c| c < 0x20) || std::str::from_utf8(content).is_err() {
                    return Err(Malformed);
                }
                self.i = k + 1;
                return Ok((start, k, escaped));
            }
            escaped = true;
            j = self.escape(k)?;
        }
    }

    /// Check the escape whose backslash is at `at`; returns the index after it. `\uXXXX`
    /// must not be a lone surrogate (as `serde_json` requires).
    fn escape(&self, at: usize) -> R<usize> {
        let hex4 = |k: usize| -> R<u32> {
            let h = self.b.get(k..k + 4).ok_or(Malformed)?;
            let mut v = 0u32;
            for &c in h {
                v = v * 16 + (c as char).to_digit(16).ok_or(Malformed)?;
            }
            Ok(v)
        };
        match self.b.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
            Some(b'u') => {
                let cp = hex4(at + 2)?;
                if (0xDC00..0xE000).contains(&cp) {
                    return Err(Malformed);
                }
                if !(0xD800..0xDC00).contains(&cp) {
                    return Ok(at + 6);
                }
                if self.b.get(at + 6) != Some(&b'\\') || self.b.get(at + 7) != Some(&b'u') {
                    return Err(Malformed);
                }
                if !(0xDC00..0xE000).contains(&hex4(at + 8)?) {
                    return Err(Malformed);
                }
                Ok(at + 12)
            }
            _ => Err(Malformed),
        }
    }

    /// Unescape `b[s..e]` into `tmp` (lenient: the validator judges malformed escapes).
    fn unescape(&mut self, s: usize, e: usize) {
        self.tmp.clear();
        let src = &self.b[s..e];
        let mut k = 0;
        while k < src.len() {
            let c = src[k];
            if c != b'\\' || k + 1 >= src.len() {
                self.tmp.push(c);
                k += 1;
                continue;
            }
            let e = src[k + 1];
            k += 2;
            let simple = match e {
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                b'/' => Some(b'/'),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            if let Some(c) = simple {
                self.tmp.push(c);
                continue;
            }
            if e != b'u' {
                self.tmp.push(e);
                continue;
            }
            let hex = |at: usize| -> Option<u32> {
                let h = src.get(at..at + 4)?;
                u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
            };
            let Some(mut cp) = hex(k) else { continue };
            k += 4;
            if (0xD800..0xDC00).contains(&cp)
                && src.get(k) == Some(&b'\\')
                && src.get(k + 1) == Some(&b'u')
                && let Some(lo) = hex(k + 2)
                && (0xDC00..0xE000).contains(&lo)
            {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                k += 6;
            }
            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
            let mut buf = [0u8; 4];
            self.tmp
                .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }

    fn object(
        &mut self,
        node: u32,
        depth: usize,
        sink: &mut impl FnMut(u32, ScanLeaf<'_>),
    ) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.i += 1; // '{'
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek()? != b'"' {
                return Err(Malformed);
            }
            let (s, e, esc) = self.raw_string()?;
            let child = if esc {
                self.unescape(s, e);
                self.trie.child(node, &self.tmp)
            } else {
                self.trie.child(node, &self.b[s..e])
            };
            self.ws();
            self.expect(b':')?;
            self.ws();
            match child {
                Some(c) => self.value(c, depth, sink)?,
                // Most values passed over are strings: no call for them.
                None if self.peek()? == b'"' => {
                    self.raw_string()?;
                }
                None => self.skip_value(depth)?,
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    fn array(
        &mut self,
        node: u32,
        depth: usize,
        sink: &mut impl FnMut(u32, ScanLeaf<'_>),
    ) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.i += 1; // '['
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(node, depth, sink)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// A value at trie node `node` (depth counts the enclosing containers).
    fn value(
        &mut self,
        node: u32,
        depth: usize,
        sink: &mut impl FnMut(u32, ScanLeaf<'_>),
    ) -> R<()> {
        let c = self.peek()?;
        match c {
            b'{' => {
                if self.trie.has_children(node) {
                    self.object(node, depth + 1, sink)
                } else {
                    self.skip_block(depth)
                }
            }
            b'[' => {
                if self.trie.has_children(node) || self.trie.leaf(node).is_some() {
                    self.array(node, depth + 1, sink)
                } else {
                    self.skip_block(depth)
                }
            }
            _ => {
                let Some(path) = self.trie.leaf(node) else {
                    return self.skip_value(depth);
                };
                match c {
                    b'"' => {
                        let (s, e, esc) = self.raw_string()?;
                        if esc {
                            self.unescape(s, e);
                            sink(path, ScanLeaf::Str(&self.tmp));
                        } else {
                            sink(path, ScanLeaf::Str(&self.b[s..e]));
                        }
                    }
                    b't' => {
                        self.literal(b"true")?;
                        sink(path, ScanLeaf::Bool(true));
                    }
                    b'f' => {
                        self.literal(b"false")?;
                        sink(path, ScanLeaf::Bool(false));
                    }
                    b'n' => {
                        self.literal(b"null")?;
                        sink(path, ScanLeaf::Null);
                    }
                    _ => {
                        let s = self.i;
                        self.i = number_end(self.b, s)?;
                        let text =
                            std::str::from_utf8(&self.b[s..self.i]).map_err(|_| Malformed)?;
                        let x: f64 = text.parse().map_err(|_| Malformed)?;
                        if !x.is_finite() {
                            return Err(Malformed);
                        }
                        sink(path, ScanLeaf::Num(x));
                    }
                }
                Ok(())
            }
        }
    }

    fn literal(&mut self, lit: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Skip one value without looking inside it.
    /// `depth`: the containers around the value.
    #[inline]
    fn skip_value(&mut self, depth: usize) -> R<()> {
        match self.peek()? {
            b'"' => self.raw_string().map(|_| ()),
            b'{' | b'[' => self.skip_block(depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                self.i = number_end(self.b, self.i)?;
                Ok(())
            }
        }
    }

    /// Skip a balanced `{…}` or `[…]` starting at its opening bracket. The range is kept
    /// for `body_is_valid`; `depth` (the containers around it) tells whether the block
    /// validator's own depth limit still adds up to [`MAX_DEPTH`].
    fn skip_block(&mut self, depth: usize) -> R<()> {
        let start = self.i;
        if self.check_while_skipping {
            // Without AVX2, or on a block that does not close, the unchecked skip and then
            // the full validation are the way out.
            match crate::structural::skip_block_checked(self.b, start) {
                Some((end, peak)) => {
                    self.i = end;
                    self.raw_unsure |= peak.is_none_or(|p| depth + p as usize > MAX_DEPTH);
                }
                None => {
                    self.skip_block_raw()?;
                    self.raw_unsure = true;
                }
            }
        } else {
            self.skip_block_raw()?;
        }
        self.skipped.push((start as u32, self.i as u32));
        self.unsure |= depth + crate::structural::MAX_BLOCK_DEPTH as usize > MAX_DEPTH;
        self.skip_depth = self.skip_depth.max(depth);
        Ok(())
    }

    /// 64 bytes at a time with `structural::skip_block`; without AVX2, sixteen at a time: a
    /// chunk without quotes that cannot close the block only adjusts the depth by counting
    /// brackets, other chunks are walked structural byte by structural byte.
    fn skip_block_raw(&mut self) -> R<()> {
        if let Some(end) = crate::structural::skip_block(self.b, self.i) {
            self.i = end;
            return Ok(());
        }
        let b = self.b;
        let mut depth = 0usize;
        let mut i = self.i;
        while i < b.len() {
            let (quotes, opens, closes, width) = structural_masks(b, i);
            if quotes == 0 && (closes.count_ones() as usize) < depth {
                depth += opens.count_ones() as usize;
                depth -= closes.count_ones() as usize;
                i += width;
                continue;
            }
            let mut all = quotes | opens | closes;
            let mut next = i + width;
            while all != 0 {
                let bit = all.trailing_zeros();
                all &= all - 1;
                let at = i + bit as usize;
                if quotes & (1 << bit) != 0 {
                    self.i = at;
                    self.raw_string()?;
                    next = self.i;
                    break;
                } else if opens & (1 << bit) != 0 {
                    depth += 1;
                } else {
                    depth = depth.checked_sub(1).ok_or(Malformed)?;
                    if depth == 0 {
                        self.i = at + 1;
                        return Ok(());
                    }
                }
            }
            i = next;
        }
        Err(Malformed)
    }
}

/// The first byte at or after `from` that ends the fast walk through a string: `"`, `\\`,
/// a control character or a non-ASCII byte. Keys and values are mostly short ASCII, so
/// this probes 16 bytes at a time inline (a library call costs more than the search).
#[inline(always)]
fn string_stop(b: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut j = from;
        while j + 16 <= b.len() {
            // SAFETY: SSE2 is part of the x86_64 baseline; the load reads 16 in-bounds bytes.
            let m = unsafe {
                let x = _mm_loadu_si128(b.as_ptr().add(j).cast());
                let q = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
                let e = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
                // Signed: bytes below 0x20 and from 0x80 up are "less than" 0x20.
                let c = _mm_cmplt_epi8(x, _mm_set1_epi8(0x20));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, e), c)) as u32
            };
            if m != 0 {
                return Some(j + m.trailing_zeros() as usize);
            }
            j += 16;
        }
        b.get(j..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || (c as i8) < 0x20)
            .map(|k| j + k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        b.get(from..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || (c as i8) < 0x20)
            .map(|k| from + k)
    }
}

/// The end of the number starting at `i`, checked as JSON numbers are (`-`, no leading
/// zeros, digits after `.` and in the exponent) and, like `serde_json`, refused when it
/// overflows an `f64`.
fn number_end(b: &[u8], i: usize) -> R<usize> {
    let digits = |mut k: usize| {
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        k
    };
    let s = i;
    let mut k = i;
    if b.get(k) == Some(&b'-') {
        k += 1;
    }
    match b.get(k) {
        Some(b'0') => k += 1,
        Some(b'1'..=b'9') => k = digits(k),
        _ => return Err(Malformed),
    }
    let int_digits = k - s;
    if b.get(k) == Some(&b'.') {
        let e = digits(k + 1);
        if e == k + 1 {
            return Err(Malformed);
        }
        k = e;
    }
    let mut scaled = false;
    if matches!(b.get(k), Some(b'e' | b'E')) {
        k += 1;
        scaled = true;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let e = digits(k);
        if e == k {
            return Err(Malformed);
        }
        k = e;
    }
    if scaled || int_digits > F64_MAX_INT_DIGITS {
        let text = std::str::from_utf8(&b[s..k]).map_err(|_| Malformed)?;
        let x: f64 = text.parse().map_err(|_| Malformed)?;
        if !x.is_finite() {
            return Err(Malformed);
        }
    }
    Ok(k)
}

/// Bit masks of the quotes, opening and closing brackets/braces in the chunk of `b` starting
/// at `i` (16 bytes, fewer at the end), and the chunk width.
#[inline]
fn structural_masks(b: &[u8], i: usize) -> (u32, u32, u32, usize) {
    #[cfg(target_arch = "x86_64")]
    if i + 16 <= b.len() {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; the load reads 16 bytes that are in
        // bounds (checked above) and tolerates any alignment.
        unsafe {
            let x = _mm_loadu_si128(b.as_ptr().add(i).cast());
            // OR-ing 0x20 folds '[' ']' onto '{' '}'.
            let z = _mm_or_si128(x, _mm_set1_epi8(0x20));
            let q = _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8))) as u32;
            let o = _mm_movemask_epi8(_mm_cmpeq_epi8(z, _mm_set1_epi8(b'{' as i8))) as u32;
            let c = _mm_movemask_epi8(_mm_cmpeq_epi8(z, _mm_set1_epi8(b'}' as i8))) as u32;
            return (q, o, c, 16);
        }
    }
    let end = (i + 16).min(b.len());
    let (mut q, mut o, mut c) = (0u32, 0u32, 0u32);
    for (k, &ch) in b[i..end].iter().enumerate() {
        match ch {
            b'"' => q |= 1 << k,
            b'{' | b'[' => o |= 1 << k,
            b'}' | b']' => c |= 1 << k,
            _ => {}
        }
    }
    (q, o, c, end - i)
}

/// Whether `b` is JSON that `serde_json::from_slice::<serde_json::Value>` accepts: RFC 8259
/// grammar, UTF-8 strings without raw control characters, paired surrogate escapes, finite
/// numbers, at most [`MAX_DEPTH`] levels of nesting, nothing but whitespace after the value.
///
/// Bodies of the usual shape are accepted by the block validator (`structural::accepts`);
/// whatever it cannot vouch for is decided here byte by byte.
pub fn validate(b: &[u8]) -> bool {
    crate::structural::accepts(b) || validate_bytewise(b)
}

/// The exact byte-by-byte validator behind [`validate`].
pub(crate) fn validate_bytewise(b: &[u8]) -> bool {
    let mut v = Validator { b, i: 0 };
    v.ws();
    if v.value(0).is_err() {
        return false;
    }
    v.ws();
    v.i == b.len()
}

struct Validator<'a> {
    b: &'a [u8],
    i: usize,
}

impl Validator<'_> {
    #[inline]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(Malformed)
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && crate::structural::is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> R<()> {
        match self.peek()? {
            b'{' => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Malformed);
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    if self.peek()? != b'"' {
                        return Err(Malformed);
                    }
                    self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return Err(Malformed);
                    }
                    self.i += 1;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b'}' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Malformed),
                    }
                }
            }
            b'[' => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Malformed);
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b']' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Malformed),
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    fn lit(&mut self, l: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(l) {
            self.i += l.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - s
    }

    fn number(&mut self) -> R<()> {
        let s = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(Malformed),
        }
        let int_digits = self.i - s;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        let mut scaled = false;
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            scaled = true;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        // serde_json refuses numbers that overflow f64; without an exponent only an integer
        // part of more than 308 digits can, so most numbers need no conversion here.
        if scaled || int_digits > F64_MAX_INT_DIGITS {
            let text = &self.b[s..self.i];
            let x: f64 = std::str::from_utf8(text)
                .expect("ASCII")
                .parse()
                .map_err(|_| Malformed)?;
            if !x.is_finite() {
                return Err(Malformed);
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> R<u32> {
        let h = self.b.get(self.i..self.i + 4).ok_or(Malformed)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16).ok_or(Malformed)?;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> R<()> {
        self.i += 1; // opening quote
        let mut run = self.i;
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    std::str::from_utf8(&self.b[run..self.i]).map_err(|_| Malformed)?;
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    std::str::from_utf8(&self.b[run..self.i]).map_err(|_| Malformed)?;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            self.i += 1;
                            let cp = self.hex4()?;
                            if (0xDC00..0xE000).contains(&cp) {
                                return Err(Malformed);
                            }
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.b.get(self.i) != Some(&b'\\')
                                    || self.b.get(self.i + 1) != Some(&b'u')
                                {
                                    return Err(Malformed);
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Malformed);
                                }
                            }
                        }
                        _ => return Err(Malformed),
                    }
                    run = self.i;
                }
                0..=0x1F => return Err(Malformed),
                _ => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn agrees(s: &[u8]) {
        let want = serde_json::from_slice::<Value>(s).is_ok();
        assert_eq!(validate(s), want, "{:?}", String::from_utf8_lossy(s));
    }

    #[test]
    fn validator_agrees_with_serde_json() {
        let cases: &[&[u8]] = &[
            b"{}",
            b" {\"a\" : [1, 2.5, -0, 1e5, 1E+5, 1e-5, true, false, null]} ",
            b"[]",
            b"1",
            b"-",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"+1",
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"0e99999",
            b"\"\\u00e9\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\\ud83d\"",
            b"\"\\ude00\"",
            b"\"\\ud83dx\"",
            b"\"\\x\"",
            b"\"a\tb\"",
            b"\"\xff\"",
            b"\"\xc3\xa9\"",
            b"{\"a\":1,}",
            b"[1,]",
            b"{\"a\" 1}",
            b"",
            b"   ",
            b"{} x",
            b"{}{}",
            b"nul",
            b"truee",
            b"[1 2]",
            b"{\"a\":1 \"b\":2}",
            b"\"\\u12\"",
            b"\"\\uZZZZ\"",
            b"{1:2}",
        ];
        for c in cases {
            agrees(c);
        }
        let big = format!("{}1{}", "9".repeat(400), "");
        agrees(big.as_bytes());
    }

    #[test]
    fn depth_limit_is_the_one_of_serde_json() {
        for n in [1usize, 100, 126, 127, 128, 129, 200] {
            let s = format!("{}{}", "[".repeat(n), "]".repeat(n));
            agrees(s.as_bytes());
            let o = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
            agrees(o.as_bytes());
        }
    }
}
