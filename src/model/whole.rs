//! Whole numbers as JSON Schema counts them: `8` and `8.0` are the same integer, so a field
//! the API documents as an integer accepts either (serde's own integer parsing refuses a
//! number written with a fraction). Used with `#[serde(deserialize_with = ...)]` on the
//! integer fields of request bodies; a fraction, a negative or a number out of range is
//! refused naming what was expected.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

struct Whole;

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number from 0 to 18446744073709551615")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        // Below 2^64 every f64 with no fraction is exactly a u64.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole)
}

/// A `u64` written as an integer or a number without a fraction.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(d)
}

/// A `u32` written as an integer or a number without a fraction.
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = whole(d)?;
    ::core::primitive::u32::try_from(v).map_err(|_| {
        de::Error::invalid_value(
            de::Unexpected::Unsigned(v),
            &"a whole number up to 4294967295",
        )
    })
}

/// A `usize` written as an integer or a number without a fraction.
pub fn usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = whole(d)?;
    ::core::primitive::usize::try_from(v)
        .map_err(|_| de::Error::invalid_value(de::Unexpected::Unsigned(v), &"a smaller number"))
}

/// An optional `u64`: absent or `null` is `None`.
pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "u64")] ::core::primitive::u64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// An optional `usize`: absent or `null` is `None`.
pub fn option_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "usize")] ::core::primitive::usize);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::u64")]
        n: u64,
        #[serde(default, deserialize_with = "super::option_usize")]
        o: Option<usize>,
    }

    fn parse(text: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn integers_and_whole_floats_are_accepted_alike() {
        assert_eq!(parse(r#"{"n": 8}"#).unwrap().n, 8);
        assert_eq!(parse(r#"{"n": 8.0}"#).unwrap().n, 8);
        assert_eq!(parse(r#"{"n": 8e3}"#).unwrap().n, 8000);
        assert_eq!(parse(r#"{"n": 1, "o": 2.0}"#).unwrap().o, Some(2));
        assert_eq!(parse(r#"{"n": 1, "o": null}"#).unwrap().o, None);
        assert_eq!(parse(r#"{"n": 1}"#).unwrap().o, None);
    }

    #[test]
    fn fractions_negatives_and_strings_are_refused() {
        for bad in [
            r#"{"n": 8.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": "8"}"#,
            r#"{"n": 1e300}"#,
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("whole number"), "{bad}: {e}");
        }
    }
}
