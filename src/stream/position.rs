//! Where a shard read starts, as the API writes it: `trim_horizon`, `latest`, `at:SEQ`,
//! `after:SEQ` or `at_timestamp:MS`.

use std::fmt;

/// Where to start reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    TrimHorizon,
    Latest,
    At(u64),
    After(u64),
    AtTimestamp(u64),
}

impl Position {
    pub fn parse(s: &str) -> Result<Self, String> {
        let seq = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("invalid sequence number {v:?} in position {s:?}"))
        };
        match s {
            "trim_horizon" => Ok(Position::TrimHorizon),
            "latest" => Ok(Position::Latest),
            _ => match s.split_once(':') {
                Some(("at", v)) => Ok(Position::At(seq(v)?)),
                Some(("after", v)) => Ok(Position::After(seq(v)?)),
                Some(("at_timestamp", v)) => v.parse().map(Position::AtTimestamp).map_err(|_| {
                    format!("invalid timestamp {v:?} in position {s:?}: unix milliseconds expected")
                }),
                _ => Err(format!(
                    "invalid position {s:?}: use trim_horizon, latest, at:SEQ, after:SEQ or at_timestamp:MS"
                )),
            },
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::TrimHorizon => f.write_str("trim_horizon"),
            Position::Latest => f.write_str("latest"),
            Position::At(s) => write!(f, "at:{s}"),
            Position::After(s) => write!(f, "after:{s}"),
            Position::AtTimestamp(t) => write!(f, "at_timestamp:{t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_print() {
        for s in [
            "trim_horizon",
            "latest",
            "at:5",
            "after:0",
            "at_timestamp:1700000000000",
        ] {
            assert_eq!(Position::parse(s).unwrap().to_string(), s);
        }
        assert!(
            Position::parse("at:x")
                .unwrap_err()
                .contains("invalid sequence")
        );
        assert!(Position::parse("oldest").is_err());
    }
}
