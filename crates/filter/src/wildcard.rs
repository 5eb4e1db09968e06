//! The `wildcard` operator: `*` matches any run of characters (also none); `\*` is a
//! literal star and `\\` a literal backslash. Matching is greedy and linear in practice
//! (no backtracking beyond the last star), so a hostile pattern cannot slow the publish path.

use crate::error::PolicyErrorKind;

/// At most this many `*` per wildcard value. AWS bounds wildcard complexity without
/// publishing a number; five covers every documented example while keeping patterns cheap.
pub const MAX_WILDCARDS_PER_VALUE: usize = 5;

/// A parsed wildcard pattern: the literal pieces between stars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    /// The pattern as written in the policy (for display and for the reference evaluator).
    pub source: String,
    /// Literal pieces; there are `stars + 1` of them (possibly empty).
    pub pieces: Vec<String>,
}

impl Wildcard {
    /// Parse a wildcard pattern, refusing consecutive stars, bad escapes and too many stars.
    pub fn parse(src: &str) -> Result<Wildcard, PolicyErrorKind> {
        let mut pieces = vec![String::new()];
        let mut chars = src.char_indices().peekable();
        let mut prev_star = false;
        while let Some((pos, c)) = chars.next() {
            match c {
                '*' => {
                    if prev_star {
                        return Err(PolicyErrorKind::ConsecutiveWildcards(pos));
                    }
                    prev_star = true;
                    pieces.push(String::new());
                }
                '\\' => {
                    prev_star = false;
                    match chars.next() {
                        Some((_, e @ ('*' | '\\'))) => {
                            pieces.last_mut().expect("never empty").push(e)
                        }
                        _ => return Err(PolicyErrorKind::InvalidEscape(pos)),
                    }
                }
                _ => {
                    prev_star = false;
                    pieces.last_mut().expect("never empty").push(c);
                }
            }
        }
        let stars = pieces.len() - 1;
        if stars > MAX_WILDCARDS_PER_VALUE {
            return Err(PolicyErrorKind::TooManyWildcards {
                count: stars,
                max: MAX_WILDCARDS_PER_VALUE,
            });
        }
        Ok(Wildcard {
            source: src.to_owned(),
            pieces,
        })
    }

    /// The literal text before the first star (the whole value when there is no star).
    pub fn literal_prefix(&self) -> &str {
        &self.pieces[0]
    }

    /// The literal text after the last star (empty when there is no star).
    pub fn literal_suffix(&self) -> &str {
        if self.pieces.len() == 1 {
            ""
        } else {
            self.pieces.last().expect("never empty")
        }
    }

    /// Whether `s` matches the pattern.
    pub fn is_match(&self, s: &[u8]) -> bool {
        let pieces = &self.pieces;
        if pieces.len() == 1 {
            return s == pieces[0].as_bytes();
        }
        let first = pieces[0].as_bytes();
        let last = pieces[pieces.len() - 1].as_bytes();
        if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
            return false;
        }
        // Middle pieces, leftmost-first, in the part not claimed by the first and last piece.
        let mut rest = &s[first.len()..s.len() - last.len()];
        for piece in &pieces[1..pieces.len() - 1] {
            let p = piece.as_bytes();
            if p.is_empty() {
                continue;
            }
            match memchr::memmem::find(rest, p) {
                Some(i) => rest = &rest[i + p.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Wildcard::parse(p).unwrap().is_match(s.as_bytes())
    }

    #[test]
    fn matches_like_a_glob() {
        let cases = [
            ("*ball", "baseball", true),
            ("*ball", "ball", true),
            ("*ball", "balls", false),
            ("bas*", "bas", true),
            ("2*0*1*7", "2607117", true),
            ("2*0*1*7", "2607118", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*", "", true),
            ("a*b*c", "abbbc", true),
            ("a*bc*bc", "abcbc", true),
            ("a*bc*bc", "abc", false),
            (r"a\*b", "a*b", true),
            (r"a\*b", "axb", false),
            (r"a\\*", r"a\zz", true),
            ("exact", "exact", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(m(p, s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn refuses_bad_patterns() {
        assert_eq!(
            Wildcard::parse("a**b"),
            Err(PolicyErrorKind::ConsecutiveWildcards(2))
        );
        assert_eq!(
            Wildcard::parse(r"a\b"),
            Err(PolicyErrorKind::InvalidEscape(1))
        );
        assert_eq!(
            Wildcard::parse("*a*b*c*d*e*"),
            Err(PolicyErrorKind::TooManyWildcards { count: 6, max: 5 })
        );
        assert!(Wildcard::parse("*a*b*c*d*e").is_ok());
    }
}
