//! Raw-byte JSON for the publish path: a fast scanner that walks only the parts of a body
//! some policy looks at and skips the rest (64 bytes at a time, see `structural`), and a
//! strict validator that accepts exactly what `serde_json` accepts (the common shapes are
//! vouched for by the block validator in `structural`, the rest is checked byte by byte).
//!
//! The scanner does not validate what it skips. That is sound because the matcher validates
//! the whole body (once) before it reports any body-scope match: an invalid body then matches
//! nothing, and bodies that match nothing never pay for validation. The scanner is exact on
//! valid JSON, and on any input it terminates without panicking.

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
}

#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    // Most bytes tested are not whitespace and above the space: one comparison for them.
    c <= b' ' && matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

impl<'a, 't, T: PathTrie> Scanner<'a, 't, T> {
    pub(crate) fn new(b: &'a [u8], trie: &'t T, tmp: Vec<u8>) -> Self {
        Scanner { b, i: 0, trie, tmp }
    }

    /// Give back the reusable buffer.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.tmp
    }

    #[inline]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(Malformed)
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    #[inline]
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
    #[inline]
    fn raw_string(&mut self) -> R<(usize, usize, bool)> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            match find_quote_or_backslash(self.b, j) {
                None => return Err(Malformed),
                Some(at) => {
                    if self.b[at] == b'"' {
                        self.i = at + 1;
                        return Ok((start, at, escaped));
                    }
                    escaped = true;
                    j = at + 2;
                }
            }
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
                None => self.skip_value()?,
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
                    self.skip_block()
                }
            }
            b'[' => {
                if self.trie.has_children(node) || self.trie.leaf(node).is_some() {
                    self.array(node, depth + 1, sink)
                } else {
                    self.skip_block()
                }
            }
            _ => {
                let Some(path) = self.trie.leaf(node) else {
                    return self.skip_value();
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
                        self.number_span();
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

    #[inline]
    fn number_span(&mut self) {
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
            )
        {
            self.i += 1;
        }
    }

    /// Skip one value without looking inside it.
    fn skip_value(&mut self) -> R<()> {
        match self.peek()? {
            b'"' => self.raw_string().map(|_| ()),
            b'{' | b'[' => self.skip_block(),
            _ => {
                let s = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
                    )
                {
                    self.i += 1;
                }
                if self.i == s { Err(Malformed) } else { Ok(()) }
            }
        }
    }

    /// Skip a balanced `{…}` or `[…]` starting at its opening bracket, sixteen bytes at a
    /// time: a chunk without quotes that cannot close the block only adjusts the depth by
    /// counting brackets; other chunks are walked structural byte by structural byte.
    fn skip_block(&mut self) -> R<()> {
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

/// The first `"` or `\\` in `b` at or after `from`. Keys and values of messages are mostly
/// short, so the first 64 bytes are probed inline, 16 at a time (a library call costs more
/// than the search); longer strings go to `memchr`.
#[inline(always)]
fn find_quote_or_backslash(b: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut j = from;
        while j + 16 <= b.len() && j < from + 64 {
            // SAFETY: SSE2 is part of the x86_64 baseline; the load reads 16 in-bounds bytes.
            let m = unsafe {
                let x = _mm_loadu_si128(b.as_ptr().add(j).cast());
                let q = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
                let e = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
                _mm_movemask_epi8(_mm_or_si128(q, e)) as u32
            };
            if m != 0 {
                return Some(j + m.trailing_zeros() as usize);
            }
            j += 16;
        }
        if j >= from + 64 {
            return memchr::memchr2(b'"', b'\\', &b[j..]).map(|k| j + k);
        }
        b.get(j..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\')
            .map(|k| j + k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr2(b'"', b'\\', b.get(from..)?).map(|k| from + k)
    }
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
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
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
