//! JSON at memory speed: the body is classified 64 bytes at a time with AVX-512 or AVX2 (two
//! nibble lookups give every byte its character class), and the rules of JSON are checked on
//! the resulting bit masks instead of byte by byte. Three users:
//!
//! - [`skip_block`]: pass over a `{…}` or `[…]` no policy looks into (brackets counted per
//!   64-byte block, strings and escapes resolved with the usual prefix-XOR trick).
//! - [`skip_block_checked`]: the same skip for text `serde_json` has checked as a
//!   `RawValue`, also looking for the little such text may hold that a `Value` parse refuses.
//! - [`accepts`]: a validator that answers "certainly valid" for the common shape of a
//!   message (object or array at the top, ASCII or UTF-8 text, simple escapes, numbers
//!   without exponent, at most 63 levels deep) and "don't know" for everything else. It never says "invalid": the
//!   caller then runs the exact byte-by-byte validator, which is the one definition of what
//!   is valid. So this code only has to be sound when it accepts.
//!
//! How the grammar is checked on masks. Inside strings only control characters and escapes
//! matter. Outside, every byte must be whitespace, a bracket, `,`, `:`, a quote or an atom
//! character (`0-9 - + . e E` and the letters of `true false null`). Tokens must follow each
//! other as JSON allows: for each kind of token end (a value, a key, `,`, `:`, an opening
//! bracket), carry-propagating addition through the whitespace runs finds the next token,
//! which must be of an allowed kind. Whether a string is a key depends on its container;
//! brackets are few, so they are walked one by one with a stack, which also yields the mask
//! of positions whose innermost container is an object. Numbers are checked with shifted
//! masks (a `.` between digits, `-` only in front, no leading zero, one `.` per number).
//! Parts a block cannot need (strings in a block without quotes, numbers in a block without
//! digits, keys where none can end) are skipped, so a block of numbers costs less than a
//! block of keys.
//!
//! Without AVX2 (or off x86-64) both functions answer "don't know" and callers fall back
//! to the byte-by-byte code. The tests hold `accepts` to `serde_json` on generated and
//! damaged documents, blocks boundaries at every offset included.

/// Which block code this CPU runs (detected once).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isa {
    None,
    Avx2,
    Avx512,
}

#[inline]
fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        static ISA: AtomicU8 = AtomicU8::new(0);
        match ISA.load(Ordering::Relaxed) {
            1 => Isa::None,
            2 => Isa::Avx2,
            3 => Isa::Avx512,
            _ => {
                // The bit-mask code wants hardware popcount and bit scans next to the vectors.
                let bits = std::arch::is_x86_feature_detected!("popcnt")
                    && std::arch::is_x86_feature_detected!("bmi1")
                    && std::arch::is_x86_feature_detected!("lzcnt");
                let isa = if bits && std::arch::is_x86_feature_detected!("avx512bw") {
                    Isa::Avx512
                } else if bits && std::arch::is_x86_feature_detected!("avx2") {
                    Isa::Avx2
                } else {
                    Isa::None
                };
                ISA.store(isa as u8 + 1, Ordering::Relaxed);
                isa
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::None
    }
}

/// Whether the block code runs here at all (tests use it to know what to expect).
#[cfg(test)]
fn have_simd() -> bool {
    isa() != Isa::None
}

/// Skip the balanced `{…}` or `[…]` whose opening bracket is at `start`; returns the index
/// just after its closing bracket. `None` when the block does not close before the end of
/// `b` or the CPU lacks AVX2 (the caller then walks it byte by byte). Like any skip, it does
/// not validate what it passes over, and it does not check that bracket kinds match.
#[inline]
pub(crate) fn skip_block(b: &[u8], start: usize) -> Option<usize> {
    skip_block_with(isa(), b, start)
}

/// [`skip_block`] with the block code of `isa`, which the CPU must support.
#[inline]
fn skip_block_with(isa: Isa, b: &[u8], start: usize) -> Option<usize> {
    match isa {
        // SAFETY: callers pass `isa()` or, in tests, an ISA below it.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::skip_block_avx512::<false>(b, start, &mut 0) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::skip_block_avx2::<false>(b, start, &mut 0) },
        _ => None,
    }
}

/// `true` only if `b` is certainly valid JSON with an object or array at the top (as
/// `serde_json` judges it); `false` means "not known", never "invalid".
pub(crate) fn accepts(b: &[u8]) -> bool {
    accepts_with(isa(), b)
}

/// [`accepts`] with the block code of `isa`, which the CPU must support.
fn accepts_with(isa: Isa, b: &[u8]) -> bool {
    match isa {
        // SAFETY: callers pass `isa()` or, in tests, an ISA below it.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::accepts_avx512(b) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::accepts_avx2(b) },
        _ => false,
    }
}

/// [`skip_block`] for text that passed `serde_json`'s `RawValue` check, which also finds
/// out whether a `Value` parse accepts the block: `Some(peak)`, the deepest nesting in it
/// (the block itself counts one), when certainly so; `None` when not known. That check
/// already enforces JSON's grammar, UTF-8, no raw control characters and well-formed
/// escapes, so all that is left to look for is what it lets through: a `\u` escape (which
/// may be a lone surrogate), a number beyond `f64` (which needs an exponent or more than
/// 308 digits, and those fill some 64-byte block) and nesting deeper than a `Value` parse
/// allows. That costs a few compares per block on top of the skip, far less than
/// [`accepts`]. Bytes after the block's end in its last 64 are looked at too, which can
/// only turn `Some` into `None`.
#[inline]
pub(crate) fn skip_block_checked(b: &[u8], start: usize) -> Option<(usize, Option<u32>)> {
    skip_block_checked_with(isa(), b, start)
}

#[inline]
fn skip_block_checked_with(isa: Isa, b: &[u8], start: usize) -> Option<(usize, Option<u32>)> {
    let mut peak = 0;
    let end = match isa {
        // SAFETY: callers pass `isa()` or, in tests, an ISA below it.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::skip_block_avx512::<true>(b, start, &mut peak) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::skip_block_avx2::<true>(b, start, &mut peak) },
        _ => None,
    }?;
    Some((end, (peak != UNSURE).then_some(peak)))
}

/// `peak` of a checked skip that found something a `Value` parse may refuse.
const UNSURE: u32 = u32::MAX;

/// The escaped characters of a block (those right after an odd-length run of backslashes),
/// carrying a trailing unmatched backslash into the next block. This is simdjson's
/// branchless formulation.
#[inline]
fn find_escaped(backslash: u64, prev_escaped: &mut u64) -> u64 {
    let backslash = backslash & !*prev_escaped;
    let follows_escape = (backslash << 1) | *prev_escaped;
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let odd_starts = backslash & !EVEN & !follows_escape;
    let (seq_even, overflow) = odd_starts.overflowing_add(backslash);
    *prev_escaped = overflow as u64;
    let invert = seq_even << 1;
    (EVEN ^ invert) & follows_escape
}

/// Bit i set when an odd number of bits at or below i are set in `x`: with `x` the quotes,
/// the positions inside strings (opening quote included, closing quote excluded).
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// `x << 1` with the bit shifted out of the previous block coming in at bit 0.
#[inline]
fn shl(x: u64, carry: &mut u64) -> u64 {
    let r = (x << 1) | *carry;
    *carry = x >> 63;
    r
}

/// For `seeds` (positions), the first position at or after each seed that is not in `run`,
/// moving upward through `run` (whitespace, or a string's body). Done with one addition:
/// a seed inside a run carries to the run's end. `carry` continues runs across blocks.
#[inline]
fn land(run: u64, seeds: u64, carry: &mut bool) -> u64 {
    // A run carried in from the previous block is a seed at bit 0: it either continues
    // through the run there or lands on bit 0 itself.
    let seeds = seeds | *carry as u64;
    let (sum, over) = run.overflowing_add(seeds & run);
    *carry = over;
    (sum & !run) | (seeds & !run)
}

/// Positions of `run` from each seed (inclusive) to the end of that seed's run, for seeds
/// inside `run`. When a run holds several seeds, the positions of the later seeds themselves
/// may be missing (the carries meet); callers only test positions that are never seeds.
#[inline]
fn fill(run: u64, seeds: u64, carry: &mut bool) -> u64 {
    let seeds = (seeds | *carry as u64) & run;
    let (sum, over) = run.overflowing_add(seeds);
    *carry = over;
    run & !sum
}

/// Iterate the set bits of `x`, lowest first.
#[inline]
fn bits(mut x: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if x == 0 {
            return None;
        }
        let i = x.trailing_zeros() as usize;
        x &= x - 1;
        Some(i)
    })
}

/// Character classes of one 64-byte block, one bit per byte.
#[derive(Default, Clone, Copy)]
struct Classes {
    quote: u64,
    backslash: u64,
    /// Space, tab, line feed, carriage return.
    ws: u64,
    /// Bytes below 0x20.
    ctrl: u64,
    open: u64,
    close: u64,
    /// `{` and `}` (of `open` and `close`, the object ones).
    brace: u64,
    comma: u64,
    colon: u64,
    digit: u64,
    zero: u64,
    minus: u64,
    dot: u64,
    /// Other bytes that may occur in atoms: `+`, `e`, `E`, and the letters of `true`,
    /// `false` and `null`.
    other: u64,
    /// Bytes of 0x80 and above.
    high: u64,
}

/// Deepest nesting the block validator follows (its stack is one `u64`); deeper documents
/// are left to the exact validator.
pub(crate) const MAX_BLOCK_DEPTH: u64 = 63;

/// Validation state carried from one block to the next. `c_*` hold the bit shifted out of
/// the previous block, `l_*`/`f_*` the carry of a run continuing into this one.
#[derive(Default)]
struct Validator {
    prev_escaped: u64,
    /// All ones when the previous block ended inside a string.
    prev_in_string: u64,
    c_atom: u64,
    c_num: u64,
    c_digit: u64,
    c_minus: u64,
    c_dot: u64,
    c_zero: u64,
    c_open: u64,
    c_comma: u64,
    c_colon: u64,
    c_key: u64,
    c_value: u64,
    l_open: bool,
    l_comma: bool,
    l_colon: bool,
    l_key: bool,
    l_value: bool,
    f_key: bool,
    f_dot: bool,
    /// Bits of a literal (`true`…) that continue into the next block.
    lit_carry: u64,
    depth: u64,
    /// Container kinds, innermost in bit 0 (1 = object); 0 at the top level.
    stack: u64,
    /// The top-level value has closed.
    done: bool,
    non_ascii: bool,
}

impl Validator {
    /// Check one block (`base` is its offset in `b`). `false`: not known to be valid.
    /// Violations are collected in `bad` and tested once: on valid input no check fails,
    /// so fewer branches is faster.
    #[inline(always)]
    fn block(&mut self, b: &[u8], base: usize, m: &Classes) -> bool {
        let mut bad = 0u64;

        // Strings: no raw control characters; escapes other than `\uXXXX` checked here
        // (`\u` is left to the exact validator).
        // Blocks without quotes or backslashes, outside any string, skip this part (most of
        // a message's numbers); likewise the key and number parts below when their inputs
        // and carries are all zero.
        let (s, quote) = if (m.quote | m.backslash | self.prev_in_string | self.prev_escaped) != 0 {
            let escaped = find_escaped(m.backslash, &mut self.prev_escaped);
            let quote = m.quote & !escaped;
            let s = prefix_xor(quote) ^ self.prev_in_string;
            self.prev_in_string = ((s as i64) >> 63) as u64;
            bad |= m.ctrl & s;
            for p in bits(m.backslash & s & !escaped) {
                match b.get(base + p + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    _ => return false,
                }
            }
            (s, quote)
        } else {
            (0, 0)
        };
        let out = !s;
        let qopen = quote & s;
        let qclose = quote & out;
        self.non_ascii |= m.high != 0;

        // Outside strings: only whitespace, structure and atom characters.
        let open = m.open & out;
        let close = m.close & out;
        let comma = m.comma & out;
        let colon = m.colon & out;
        let atom = (m.digit | m.minus | m.dot | m.other) & out;
        bad |= out & !(m.ws | quote | open | close | comma | colon | atom);

        // Brackets, one by one but without branches (`[` and `]` alternate in arrays of
        // arrays, which a predictor cannot learn): nesting, matching kinds, nothing after
        // the top-level value, and which positions sit directly in an object.
        let mut in_obj = 0u64.wrapping_sub(self.stack & 1);
        let brackets = open | close;
        let (opens, closes) = (open.count_ones() as u64, close.count_ones() as u64);
        let arrays_on_top = (self.stack.trailing_zeros() as u64).min(self.depth);
        let mut x = brackets;
        if brackets != 0
            && m.brace & brackets == 0
            && closes < arrays_on_top
            && self.depth + opens <= MAX_BLOCK_DEPTH
        {
            // The common block inside an array of arrays (coordinates, matrices): only `[`
            // and `]`, and no `]` reaches below the arrays on top of the stack. Then kinds
            // match, the depth stays above zero, every position stays in an array, and as
            // array levels are zero bits the stack just shifts.
            if opens >= closes {
                self.stack <<= opens - closes;
            } else {
                self.stack >>= closes - opens;
            }
            self.depth = self.depth + opens - closes;
            x = 0;
        }
        while x != 0 {
            let p = x.trailing_zeros();
            x &= x - 1;
            let o = (open >> p) & 1;
            // `{` `}` are 0x7B 0x7D, `[` `]` 0x5B 0x5D.
            let kind = ((b[base + p as usize] >> 5) & 1) as u64;
            let was_obj = self.stack & 1;
            bad |= self.done as u64;
            bad |= (o ^ 1) & ((self.depth == 0) as u64 | (was_obj ^ kind));
            let push = 0u64.wrapping_sub(o);
            self.stack = (((self.stack << 1) | kind) & push) | ((self.stack >> 1) & !push);
            self.depth = self.depth.wrapping_add(2 * o).wrapping_sub(1);
            bad |= (self.depth > MAX_BLOCK_DEPTH) as u64;
            self.done = self.depth == 0;
            in_obj ^= 0u64.wrapping_sub((self.stack & 1) ^ was_obj) & ((!0u64 << p) << 1);
        }
        if self.done {
            // Nothing but whitespace after the top-level value.
            let last = 63 - (open | close).leading_zeros().min(63);
            let after = if open | close == 0 {
                !0
            } else {
                (!0u64 << last) << 1
            };
            bad |= !m.ws & after;
        }

        // Atoms: literals are compared as text, numbers checked on masks.
        let atom_before = shl(atom, &mut self.c_atom);
        let atom_start = atom & !atom_before;
        let after_atom = !atom & atom_before;
        let mut literal = self.lit_carry;
        self.lit_carry = 0;
        for p in bits(atom_start & m.other) {
            let rest = &b[base + p..];
            let len = if rest.starts_with(b"true") || rest.starts_with(b"null") {
                4
            } else if rest.starts_with(b"false") {
                5
            } else {
                return false;
            };
            if rest.get(len).is_some_and(|&c| is_atom_byte(c)) {
                return false;
            }
            let span = ((1u128 << len) - 1) << p;
            literal |= span as u64;
            self.lit_carry |= (span >> 64) as u64;
        }
        let num = atom & !literal;
        let digit_before = shl(m.digit, &mut self.c_digit);
        let number_carries = self.c_minus | self.c_dot | self.c_num | self.c_zero;
        if num | number_carries != 0 || self.f_dot {
            let num_start = atom_start & num;
            let minus = m.minus & num;
            let dot = m.dot & num;
            // Exponents (which can overflow to infinity) and whole blocks of digits (which
            // can too) are left to the exact validator; letters have no other place in a
            // number.
            bad |= (num & m.other) | (num == !0) as u64;
            // A number starts with `-` or a digit; `-` only there.
            bad |= (num_start & !(m.minus | m.digit)) | (minus & !num_start);
            // `-` and `.` are followed by a digit, `.` follows one.
            let after_minus = shl(minus, &mut self.c_minus);
            let after_dot = shl(dot, &mut self.c_dot);
            bad |= ((after_minus | after_dot) & !m.digit) | (dot & !digit_before);
            // One `.` per number: none in the rest of a number after its first.
            bad |= dot & fill(num, after_dot, &mut self.f_dot);
            // A number ends with a digit.
            bad |= after_atom & shl(num, &mut self.c_num) & !digit_before;
            // No leading zero: a `0` that starts the integer part (after neither a digit
            // nor `.`) is not followed by a digit.
            let lead_zero = m.zero & num & !digit_before & !after_dot;
            bad |= shl(lead_zero, &mut self.c_zero) & m.digit;
        }

        // Token order: what may follow `[`/`{`, `,`, `:`, a key and a value.
        let value_start = atom_start | open | qopen;
        let after_open = land(m.ws, shl(open, &mut self.c_open), &mut self.l_open);
        bad |= after_open & !(value_start | close);
        bad |= after_open & in_obj & !(qopen | close);
        let after_comma = land(m.ws, shl(comma, &mut self.c_comma), &mut self.l_comma);
        bad |= after_comma & !value_start;
        bad |= after_comma & in_obj & !qopen;
        if colon | self.c_colon != 0 || self.l_colon {
            let after_colon = land(m.ws, shl(colon, &mut self.c_colon), &mut self.l_colon);
            bad |= after_colon & !value_start;
        }
        let key_start = qopen & (after_open | after_comma) & in_obj;
        let mut key_end = 0;
        if key_start | self.c_key != 0 || self.f_key || self.l_key {
            key_end = land(s, key_start, &mut self.f_key);
            let after_key = land(m.ws, shl(key_end, &mut self.c_key), &mut self.l_key);
            bad |= after_key & !colon;
        } else {
            // No key can end here, so no colon may appear either.
            bad |= colon;
        }
        let value_end = shl(close | (qclose & !key_end), &mut self.c_value) | after_atom;
        let after_value = land(m.ws, value_end, &mut self.l_value);
        bad |= after_value & !(comma | close);
        bad == 0
    }

    fn finish(&self, b: &[u8]) -> bool {
        self.done && self.prev_in_string == 0 && (!self.non_ascii || std::str::from_utf8(b).is_ok())
    }
}

#[inline]
fn is_atom_byte(c: u8) -> bool {
    matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'a'..=b'z' | b'A'..=b'Z')
}

/// JSON whitespace (RFC 8259: space, tab, line feed, carriage return).
#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    // Most bytes tested are not whitespace and above the space: one comparison for them.
    c <= b' ' && matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Classes, UNSURE, Validator, prefix_xor};
    use std::arch::x86_64::*;

    // Nibble tables. Table A: bit 0 space, 1 tab/LF/CR, 2 control, 3 quote, 4 backslash,
    // 5 `{[`, 6 `}]`, 7 comma. Table B: bit 0 digit, 1 minus, 2 plus, 3 dot, 4 `eE`,
    // 5 `a e f l n`, 6 `r s t u`, 7 colon (bits 2, 4, 5, 6 are only used together). A byte
    // has bit k when its low nibble is in the low table's set for k and its high nibble in
    // the high table's.
    const LO_A: [u8; 16] = [
        0x05, 0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x06, 0x06, 0x24, 0x94, 0x46, 0x04,
        0x04,
    ];
    const HI_A: [u8; 16] = [
        0x06, 0x04, 0x89, 0, 0, 0x70, 0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    const LO_B: [u8; 16] = [
        0x01, 0x21, 0x41, 0x41, 0x41, 0x71, 0x21, 0x01, 0x01, 0x01, 0x80, 0x04, 0x20, 0x02, 0x28,
        0x00,
    ];
    const HI_B: [u8; 16] = [
        0, 0, 0x0E, 0x81, 0x10, 0, 0x30, 0x40, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[inline]
    #[target_feature(enable = "avx2")]
    fn table(t: &[u8; 16]) -> __m256i {
        // SAFETY: reads exactly 16 bytes from a 16-byte array.
        let half = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
        _mm256_broadcastsi128_si256(half)
    }

    /// Class bytes of 32 input bytes under one table pair.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lookup(x: __m256i, lo: __m256i, hi: __m256i) -> __m256i {
        let nib = _mm256_set1_epi8(0x0F);
        let l = _mm256_shuffle_epi8(lo, _mm256_and_si256(x, nib));
        let h = _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16::<4>(x), nib));
        _mm256_and_si256(l, h)
    }

    /// Bit `7 - S` of every class byte, as a 32-bit mask.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bit<const S: i32>(c: __m256i) -> u32 {
        _mm256_movemask_epi8(_mm256_slli_epi16::<S>(c)) as u32
    }

    /// `{` and `}` of 32 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn brace(x: __m256i) -> u32 {
        let o = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'{' as i8));
        let c = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'}' as i8));
        _mm256_movemask_epi8(_mm256_or_si256(o, c)) as u32
    }

    #[inline]
    fn join(lo: u32, hi: u32) -> u64 {
        lo as u64 | (hi as u64) << 32
    }

    /// Load 64 bytes at `p`.
    ///
    /// # Safety
    /// `p..p + 64` must be readable.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(p: *const u8) -> (__m256i, __m256i) {
        // SAFETY: the caller guarantees 64 readable bytes.
        unsafe {
            (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(32).cast()),
            )
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn classify(x: (__m256i, __m256i)) -> Classes {
        let (la, ha, lb, hb) = (table(&LO_A), table(&HI_A), table(&LO_B), table(&HI_B));
        let (a0, a1) = (lookup(x.0, la, ha), lookup(x.1, la, ha));
        let (b0, b1) = (lookup(x.0, lb, hb), lookup(x.1, lb, hb));
        let zero = _mm256_set1_epi8(b'0' as i8);
        let ws2 = _mm256_set1_epi8(0x03);
        let nz = |c: __m256i, k: __m256i| -> u32 {
            !(_mm256_movemask_epi8(_mm256_cmpeq_epi8(
                _mm256_and_si256(c, k),
                _mm256_setzero_si256(),
            )) as u32)
        };
        let other = _mm256_set1_epi8(0x74);
        Classes {
            quote: join(bit::<4>(a0), bit::<4>(a1)),
            backslash: join(bit::<3>(a0), bit::<3>(a1)),
            ws: join(nz(a0, ws2), nz(a1, ws2)),
            ctrl: join(bit::<5>(a0), bit::<5>(a1)),
            open: join(bit::<2>(a0), bit::<2>(a1)),
            close: join(bit::<1>(a0), bit::<1>(a1)),
            brace: join(brace(x.0), brace(x.1)),
            comma: join(bit::<0>(a0), bit::<0>(a1)),
            colon: join(bit::<0>(b0), bit::<0>(b1)),
            digit: join(bit::<7>(b0), bit::<7>(b1)),
            zero: join(
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(x.0, zero)) as u32,
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(x.1, zero)) as u32,
            ),
            minus: join(bit::<6>(b0), bit::<6>(b1)),
            dot: join(bit::<4>(b0), bit::<4>(b1)),
            other: join(nz(b0, other), nz(b1, other)),
            high: join(
                _mm256_movemask_epi8(x.0) as u32,
                _mm256_movemask_epi8(x.1) as u32,
            ),
        }
    }

    /// Quotes, backslashes, opening and closing brackets (for skipping), and `e` `E` (for
    /// the checked skip; unused, the compiler drops them).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn brackets(x: (__m256i, __m256i)) -> (u64, u64, u64, u64, u64) {
        let (la, ha) = (table(&LO_A), table(&HI_A));
        let (a0, a1) = (lookup(x.0, la, ha), lookup(x.1, la, ha));
        let e = |v: __m256i| {
            let z = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(z, _mm256_set1_epi8(b'e' as i8))) as u32
        };
        (
            join(bit::<4>(a0), bit::<4>(a1)),
            join(bit::<3>(a0), bit::<3>(a1)),
            join(bit::<2>(a0), bit::<2>(a1)),
            join(bit::<1>(a0), bit::<1>(a1)),
            join(e(x.0), e(x.1)),
        )
    }

    /// The 64 bytes of `b` from `at`, padded with spaces past the end, at a readable address.
    #[inline]
    fn block_ptr(b: &[u8], at: usize, pad: &mut [u8; 64]) -> *const u8 {
        if at + 64 <= b.len() {
            // SAFETY: `at + 64 <= b.len()`.
            unsafe { b.as_ptr().add(at) }
        } else {
            *pad = [b' '; 64];
            pad[..b.len() - at].copy_from_slice(&b[at..]);
            pad.as_ptr()
        }
    }

    // AVX-512 (BW): the same tables, 64 bytes per register, masks straight from the compare.
    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn table512(t: &[u8; 16]) -> __m512i {
        // SAFETY: reads exactly 16 bytes from a 16-byte array.
        let half = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
        _mm512_broadcast_i32x4(half)
    }

    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn lookup512(x: __m512i, lo: __m512i, hi: __m512i) -> __m512i {
        let nib = _mm512_set1_epi8(0x0F);
        let l = _mm512_shuffle_epi8(lo, _mm512_and_si512(x, nib));
        let h = _mm512_shuffle_epi8(hi, _mm512_and_si512(_mm512_srli_epi16::<4>(x), nib));
        _mm512_and_si512(l, h)
    }

    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn test512(c: __m512i, k: u8) -> u64 {
        _mm512_test_epi8_mask(c, _mm512_set1_epi8(k as i8))
    }

    /// The 64 bytes of `b` from `at` (`at < b.len()`), spaces past the end. The masked load
    /// neither reads nor faults beyond the slice, so the tail needs no copy.
    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn load512(b: &[u8], at: usize) -> __m512i {
        let p = b[at..].as_ptr();
        if at + 64 <= b.len() {
            // SAFETY: 64 bytes from `at` are in bounds.
            unsafe { _mm512_loadu_si512(p.cast()) }
        } else {
            let k = (1u64 << (b.len() - at)) - 1;
            // SAFETY: only the lanes in `k`, which are in bounds, are read.
            unsafe { _mm512_mask_loadu_epi8(_mm512_set1_epi8(b' ' as i8), k, p.cast()) }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn classify512(b: &[u8], at: usize, _pad: &mut [u8; 64]) -> Classes {
        let x = load512(b, at);
        let a = lookup512(x, table512(&LO_A), table512(&HI_A));
        let b = lookup512(x, table512(&LO_B), table512(&HI_B));
        Classes {
            quote: test512(a, 0x08),
            backslash: test512(a, 0x10),
            ws: test512(a, 0x03),
            ctrl: test512(a, 0x04),
            open: test512(a, 0x20),
            close: test512(a, 0x40),
            brace: _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b'{' as i8))
                | _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b'}' as i8)),
            comma: test512(a, 0x80),
            colon: test512(b, 0x80),
            digit: test512(b, 0x01),
            zero: _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b'0' as i8)),
            minus: test512(b, 0x02),
            dot: test512(b, 0x08),
            other: test512(b, 0x74),
            high: _mm512_movepi8_mask(x),
        }
    }

    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn brackets512(b: &[u8], at: usize, _pad: &mut [u8; 64]) -> (u64, u64, u64, u64, u64) {
        let x = load512(b, at);
        let a = lookup512(x, table512(&LO_A), table512(&HI_A));
        let z = _mm512_or_si512(x, _mm512_set1_epi8(0x20));
        (
            test512(a, 0x08),
            test512(a, 0x10),
            test512(a, 0x20),
            test512(a, 0x40),
            _mm512_cmpeq_epi8_mask(z, _mm512_set1_epi8(b'e' as i8)),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn classify256(b: &[u8], at: usize, pad: &mut [u8; 64]) -> Classes {
        // SAFETY: `block_ptr` yields 64 readable bytes.
        classify(unsafe { load(block_ptr(b, at, pad)) })
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn brackets256(b: &[u8], at: usize, pad: &mut [u8; 64]) -> (u64, u64, u64, u64, u64) {
        // SAFETY: `block_ptr` yields 64 readable bytes.
        brackets(unsafe { load(block_ptr(b, at, pad)) })
    }

    /// Digits; whitespace, `,`, `:` and bytes past the end (of the checked skip, which
    /// asks for them only now and then).
    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn digits_apart512(b: &[u8], at: usize, _pad: &mut [u8; 64]) -> (u64, u64) {
        let x = load512(b, at);
        let d = _mm512_sub_epi8(x, _mm512_set1_epi8(b'0' as i8));
        let eq = |k: u8| _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(k as i8));
        (
            _mm512_cmplt_epu8_mask(d, _mm512_set1_epi8(10)),
            _mm512_cmple_epu8_mask(x, _mm512_set1_epi8(b' ' as i8)) | eq(b',') | eq(b':'),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn digits_apart256(b: &[u8], at: usize, pad: &mut [u8; 64]) -> (u64, u64) {
        let m = classify256(b, at, pad);
        (m.digit, m.ws | m.comma | m.colon)
    }

    /// The two entry points, compiled once per instruction set.
    macro_rules! drivers {
        ($feature:literal, $skip:ident, $accepts:ident, $brackets:ident, $classify:ident, $digits_apart:ident) => {
            /// See [`super::skip_block`]; with `CHECK`, [`super::skip_block_checked`],
            /// which keeps its answer in `peak`.
            ///
            /// # Safety
            /// The CPU must support the target feature.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $skip<const CHECK: bool>(
                b: &[u8],
                start: usize,
                peak: &mut u32,
            ) -> Option<usize> {
                let mut pad = [0u8; 64];
                let mut at = start;
                let mut depth = 0usize;
                let mut prev_escaped = 0u64;
                let mut prev_in_string = 0u64;
                // Kept in a register: through `peak` every block would wait on memory.
                let mut pk = 0u32;
                while at < b.len() {
                    let (quote, backslash, open, close, letters) = $brackets(b, at, &mut pad);
                    // Most blocks of a skipped subtree (numbers) have no string in them.
                    let s = if quote | backslash | prev_escaped | prev_in_string != 0 {
                        let escaped = super::find_escaped(backslash, &mut prev_escaped);
                        if CHECK && super::bits(escaped).any(|p| b.get(at + p) == Some(&b'u')) {
                            pk = UNSURE;
                        }
                        let quote = quote & !escaped;
                        let s = prefix_xor(quote) ^ prev_in_string;
                        prev_in_string = ((s as i64) >> 63) as u64;
                        s
                    } else {
                        0
                    };
                    let (open, close) = (open & !s, close & !s);
                    if CHECK {
                        // The nesting in a block stays below its depth at the start plus
                        // the brackets it opens.
                        pk = pk.max((depth + open.count_ones() as usize) as u32);
                        // Outside strings a letter right after a digit can only start an
                        // exponent; a block outside strings with nothing between tokens
                        // lies inside a number of 64 bytes or more.
                        let letters = letters & !s;
                        let bare = s | quote | open | close == 0;
                        if letters != 0 || bare {
                            let (digits, apart) = $digits_apart(b, at, &mut pad);
                            let prev_digit = at > 0 && b[at - 1].is_ascii_digit();
                            if letters & ((digits << 1) | prev_digit as u64) != 0
                                || (bare && apart == 0)
                            {
                                pk = UNSURE;
                            }
                        }
                    }
                    if (close.count_ones() as usize) < depth {
                        depth += open.count_ones() as usize;
                        depth -= close.count_ones() as usize;
                    } else {
                        let mut all = open | close;
                        while all != 0 {
                            let bit = all & all.wrapping_neg();
                            all ^= bit;
                            if open & bit != 0 {
                                depth += 1;
                            } else {
                                depth = depth.checked_sub(1)?;
                                if depth == 0 {
                                    *peak = pk;
                                    return Some(at + bit.trailing_zeros() as usize + 1);
                                }
                            }
                        }
                    }
                    at += 64;
                }
                None
            }

            /// See [`super::accepts`].
            ///
            /// # Safety
            /// The CPU must support the target feature.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $accepts(b: &[u8]) -> bool {
                let first = b.iter().position(|&c| !super::is_ws(c));
                if !first.is_some_and(|i| matches!(b[i], b'{' | b'[')) {
                    return false;
                }
                let mut v = Validator::default();
                let mut pad = [0u8; 64];
                let mut at = 0;
                while at < b.len() {
                    let m = $classify(b, at, &mut pad);
                    if !v.block(b, at, &m) {
                        return false;
                    }
                    at += 64;
                }
                v.finish(b)
            }
        };
    }

    drivers!(
        "avx2,popcnt,bmi1,lzcnt",
        skip_block_avx2,
        accepts_avx2,
        brackets256,
        classify256,
        digits_apart256
    );
    drivers!(
        "avx512bw,popcnt,bmi1,lzcnt",
        skip_block_avx512,
        accepts_avx512,
        brackets512,
        classify512,
        digits_apart512
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic, good enough to pick shapes and mutations.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    const WS: &[&str] = &["", "", " ", "\n", "\t ", "\r\n  "];
    const ATOMS: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "12.5",
        "-122.377456057825626",
        "37.710056502828650",
        "0.5",
        "100",
        "true",
        "false",
        "null",
        "1e5",
        "2E-3",
        "7",
    ];
    const STRS: &[&str] = &[
        "\"\"",
        "\"a\"",
        "\"FULTON\"",
        "\"a b\"",
        "\"q\\\"x\"",
        "\"\\\\\"",
        "\"\\n\\t/\"",
        "\"\\u00e9\"",
        "\"\u{e9}t\u{e9}\"",
        "\"{[,:]}\"",
        "\"x\\/y\"",
    ];

    fn value(r: &mut Rng, depth: usize, out: &mut String) {
        let w = |r: &mut Rng, out: &mut String| out.push_str(r.pick(WS));
        match if depth > 5 { r.below(2) } else { r.below(4) } {
            0 => out.push_str(r.pick(ATOMS)),
            1 => out.push_str(r.pick(STRS)),
            2 => {
                out.push('[');
                let n = r.below(5);
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    w(r, out);
                    value(r, depth + 1, out);
                    w(r, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                let n = r.below(5);
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    w(r, out);
                    out.push_str(r.pick(STRS));
                    w(r, out);
                    out.push(':');
                    w(r, out);
                    value(r, depth + 1, out);
                    w(r, out);
                }
                out.push('}');
            }
        }
    }

    fn document(r: &mut Rng) -> Vec<u8> {
        let mut s = String::new();
        s.push_str(r.pick(WS));
        if r.below(2) == 0 {
            s.push('{');
            let n = 1 + r.below(12);
            for i in 0..n {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(r.pick(STRS));
                s.push(':');
                value(r, 1, &mut s);
            }
            s.push('}');
        } else {
            value(r, 0, &mut s);
        }
        s.push_str(r.pick(WS));
        s.into_bytes()
    }

    const NOISE: &[u8] = b"{}[],:\"\\ 0-+.eE1tnfx\t\n\x01\xc3\xa9\xff/u";

    fn mutate(r: &mut Rng, d: &mut Vec<u8>) {
        for _ in 0..1 + r.below(3) {
            if d.is_empty() {
                d.push(b'{');
            }
            let at = r.below(d.len());
            match r.below(5) {
                0 => {
                    d.remove(at);
                }
                1 => d.insert(at, NOISE[r.below(NOISE.len())]),
                2 => d[at] = NOISE[r.below(NOISE.len())],
                3 => d.truncate(at),
                _ => {
                    let b = r.below(d.len());
                    d.swap(at, b);
                }
            }
        }
    }

    fn serde_ok(d: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(d).is_ok()
    }

    /// Where AVX-512 runs, the AVX2 code must answer the same (it is the fallback of CPUs
    /// without AVX-512, so it is checked here too).
    fn same_on_avx2(d: &[u8]) {
        if isa() == Isa::Avx512 {
            assert_eq!(
                accepts_with(Isa::Avx2, d),
                accepts_with(Isa::Avx512, d),
                "{:?}",
                String::from_utf8_lossy(d)
            );
        }
    }

    #[test]
    fn accepts_only_what_serde_json_accepts() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut valid, mut fast) = (0, 0);
        // `STRUCTURAL_CASES` runs more (or fewer) documents, for a deeper local check.
        let cases = std::env::var("STRUCTURAL_CASES").map_or(60_000, |v| v.parse().unwrap());
        for _ in 0..cases {
            let mut d = document(&mut r);
            let ok = serde_ok(&d);
            assert!(
                ok,
                "generator made invalid JSON: {}",
                String::from_utf8_lossy(&d)
            );
            // Exponents, `\u` escapes and scalars at the top are left to the bytewise
            // validator by design.
            let text = String::from_utf8_lossy(&d);
            if !["e5", "E-3", "\\u"].iter().any(|x| text.contains(x))
                && text.trim_start().starts_with(['{', '['])
            {
                valid += 1;
                if accepts(&d) {
                    fast += 1;
                } else {
                    panic!("not accepted: {text:?}");
                }
            }
            assert_eq!(crate::json::validate(&d), ok);
            same_on_avx2(&d);
            for _ in 0..4 {
                mutate(&mut r, &mut d);
                same_on_avx2(&d);
                let ok = serde_ok(&d);
                assert!(
                    !accepts(&d) || ok,
                    "accepted invalid JSON: {:?}",
                    String::from_utf8_lossy(&d)
                );
                assert_eq!(
                    crate::json::validate(&d),
                    ok,
                    "{:?}",
                    String::from_utf8_lossy(&d)
                );
            }
        }
        if have_simd() {
            // The fast path must carry the common case, or it is dead weight.
            assert_eq!(fast, valid);
        }
    }

    /// Pieces a `RawValue` check lets through and a `Value` parse may refuse.
    const RAW_ONLY: &[&str] = &[
        "1e400",
        "-1E+999",
        "1e-999",
        "2e3",
        "\"\\ud800\"",
        "\"\\udc00x\"",
        "\"\\ud83d\\ude00\"",
        "\"\\u0041\"",
    ];

    /// The checked skip of the whole of `b`, as the scanner uses it for a block nested in
    /// `depth` containers.
    fn raw_value_accepts_with(isa: Isa, b: &[u8], depth: usize) -> bool {
        matches!(skip_block_checked_with(isa, b, 0), Some((end, Some(peak)))
            if end == b.len() && depth + peak as usize <= crate::json::MAX_DEPTH)
    }

    fn raw_value_accepts(b: &[u8], depth: usize) -> bool {
        raw_value_accepts_with(isa(), b, depth)
    }

    fn raw_ok(d: &[u8]) -> bool {
        serde_json::from_slice::<&serde_json::value::RawValue>(d).is_ok()
    }

    /// Where AVX-512 runs, the AVX2 code must answer the same.
    fn raw_same_on_avx2(d: &[u8], depth: usize) {
        if isa() == Isa::Avx512 {
            assert_eq!(
                raw_value_accepts_with(Isa::Avx2, d, depth),
                raw_value_accepts_with(Isa::Avx512, d, depth),
                "{:?}",
                String::from_utf8_lossy(d)
            );
        }
    }

    #[test]
    fn raw_value_accepts_only_what_a_value_parse_accepts() {
        let mut r = Rng(0xC0FF_EE00_1234_5678);
        let (mut plain, mut fast) = (0, 0);
        for n in 0..40_000 {
            let mut d = document(&mut r);
            let mut long = false;
            // Splice in what only the `RawValue` check allows, or a long number.
            if n % 3 == 0 {
                let t = String::from_utf8(d).unwrap();
                long = r.below(4) == 0;
                let piece = if long {
                    "9".repeat(60 + r.below(300))
                } else {
                    r.pick(RAW_ONLY).to_owned()
                };
                d = t.replacen("100", &piece, 1).into_bytes();
            }
            let t = String::from_utf8_lossy(&d).trim().to_owned();
            if !t.starts_with(['{', '[']) || !raw_ok(t.as_bytes()) {
                continue;
            }
            for depth in [0, 1, 60, 126, 127] {
                let nested = format!("{}{t}{}", "[".repeat(depth), "]".repeat(depth));
                let ok = serde_ok(nested.as_bytes());
                let got = raw_value_accepts(t.as_bytes(), depth);
                assert!(!got || ok, "accepted at depth {depth}: {t:?}");
                raw_same_on_avx2(t.as_bytes(), depth);
                if depth == 1 && ok && !long && !t.contains(['e', 'E']) && !t.contains("\\u") {
                    plain += 1;
                    fast += usize::from(got);
                }
            }
        }
        if have_simd() {
            // Text without exponents and `\u` escapes, nested shallowly, is the common
            // case the check exists for: it must not fall back there.
            assert!(plain > 4_000 && fast == plain, "{fast} of {plain}");
        }
    }

    #[test]
    fn raw_value_accepts_checks_depth_and_long_numbers() {
        if !have_simd() {
            return;
        }
        for n in [1usize, 2, 63, 64, 65, 100, 126, 127, 128, 200] {
            let d = format!("{}1{}", "[".repeat(n), "]".repeat(n));
            for depth in [0, 1, 5, 64] {
                let want = n + depth <= crate::json::MAX_DEPTH;
                assert_eq!(raw_value_accepts(d.as_bytes(), depth), want, "{n} {depth}");
                raw_same_on_avx2(d.as_bytes(), depth);
            }
        }
        for pad in 0..70 {
            for digits in [1usize, 63, 64, 127, 128, 308, 309, 400] {
                let d = format!("[{}{}]", " ".repeat(pad), "9".repeat(digits));
                let got = raw_value_accepts(d.as_bytes(), 0);
                assert!(!got || serde_ok(d.as_bytes()), "{d}");
                if digits < 64 {
                    assert!(got, "{d}");
                }
                raw_same_on_avx2(d.as_bytes(), 0);
            }
        }
    }

    #[test]
    fn skips_blocks_like_the_bytewise_walk() {
        let mut r = Rng(7);
        for _ in 0..20_000 {
            let mut s = String::from("[");
            value(&mut r, 0, &mut s);
            s.push_str(", 1]  ,  \"tail\"");
            let b = s.as_bytes();
            let want = s.len() - "  ,  \"tail\"".len();
            if have_simd() {
                assert_eq!(skip_block(b, 0), Some(want), "{s}");
            }
            if isa() == Isa::Avx512 {
                assert_eq!(skip_block_with(Isa::Avx2, b, 0), Some(want), "{s}");
            }
        }
        if have_simd() {
            assert_eq!(skip_block(b"[[1,2]", 0), None);
            assert_eq!(skip_block(b"{\"]\":1}x", 0), Some(7));
            assert_eq!(skip_block(b"[\"\\\\\",\"\\\"]\"]", 0), Some(12));
        }
    }

    #[test]
    fn long_documents_cross_blocks() {
        // Numbers, strings and literals straddling 64-byte boundaries at every offset.
        for pad in 0..70 {
            let head = " ".repeat(pad);
            for body in [
                "[-122.377456057825626, 37.710056502828650, 0, null, true, false, \"ab\\\"c\"]",
                "{\"key\" : {\"nested\": [1.5, -0.25, 100]}, \"k2\":\"v\"}",
            ] {
                let d = format!("{head}{body}{head}");
                assert!(accepts(d.as_bytes()) || !have_simd(), "{d}");
                for bad in ["1.2.3", "01", "-", "1.", ".5", "--1", "tru", "nulll", "1-2"] {
                    let x = d
                        .replacen("100", bad, 1)
                        .replacen("37.710056502828650", bad, 1);
                    assert!(!accepts(x.as_bytes()) || serde_ok(x.as_bytes()), "{x}");
                }
            }
        }
    }
}
