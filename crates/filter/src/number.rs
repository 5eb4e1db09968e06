//! How numbers compare. SNS compares numbers as numbers (`301.5` equals `3.015e2`), with
//! limited precision: AWS documents "five digits of accuracy after the decimal point", and a
//! policy value `100.123456789` is known to match a message value `100.1234567` but not
//! `100.1234561`. Rounding both sides to a whole number of millionths is the rule that
//! reproduces all of that, so every comparison in this crate goes through [`key`].

/// Millionths: the unit numbers are rounded to before they are compared.
const SCALE: f64 = 1e6;

/// The largest magnitude a `numeric` operand may have (AWS: "-10^9 to 10^9").
pub const MAX_POLICY_MAGNITUDE: f64 = 1e9;

/// The comparison key of a number: the value rounded to millionths, as an `f64` that is never
/// NaN and never `-0.0`, so keys can be ordered with `<` and hashed by bits.
///
/// Rounding is monotonic, so `a <= b` implies `key(a) <= key(b)`; beyond about 9e9 every
/// `f64` is already a whole number of millionths and the key is exact. Values beyond
/// ±1.7e302 all map to ±infinity (they exceed anything a `numeric` operand may hold).
#[inline]
pub fn key(x: f64) -> f64 {
    let k = (x * SCALE).round();
    if k == 0.0 { 0.0 } else { k }
}

/// Bits of a key, for hashing exact-number lookups.
#[inline]
pub fn key_bits(k: f64) -> u64 {
    k.to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notations_of_one_number_share_a_key() {
        assert_eq!(key(301.5), key("3.015e2".parse().unwrap()));
        assert_eq!(key(-0.0), key(0.0));
        assert_eq!(key(-0.0).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn precision_is_millionths_rounded() {
        assert_eq!(key(100.123456789), key(100.1234567));
        assert_ne!(key(100.123456789), key(100.1234561));
        assert_ne!(key(100.0), key(100.1));
    }

    #[test]
    fn order_is_kept() {
        let xs = [-1e300, -5e9, -1.5, -1e-7, 0.0, 1e-7, 2.5, 1e9, 5e12, 1e300];
        for w in xs.windows(2) {
            assert!(key(w[0]) <= key(w[1]), "{} {}", w[0], w[1]);
        }
    }
}
