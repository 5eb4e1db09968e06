//! The `cidr` operator: an IPv4 or IPv6 network; a message value matches when it is an IP
//! address of the same family inside the network.

use crate::error::PolicyErrorKind;
use std::net::IpAddr;

/// A parsed network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    /// Parse `address/bits`, refusing what AWS refuses (with AWS's texts).
    pub fn parse(s: &str) -> Result<Cidr, PolicyErrorKind> {
        let mut parts = s.split('/');
        let (Some(addr), Some(bits), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PolicyErrorKind::CidrNoSlash);
        };
        let bits: u8 = match bits.parse::<u32>() {
            Ok(b) => u8::try_from(b).unwrap_or(u8::MAX),
            Err(_) => return Err(PolicyErrorKind::CidrMaskNotInteger),
        };
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => {
                if bits > 32 {
                    return Err(PolicyErrorKind::CidrMaskRange(32));
                }
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                Ok(Cidr::V4 {
                    net: u32::from(a) & mask,
                    mask,
                })
            }
            Ok(IpAddr::V6(a)) => {
                if bits > 128 {
                    return Err(PolicyErrorKind::CidrMaskRange(128));
                }
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                Ok(Cidr::V6 {
                    net: u128::from(a) & mask,
                    mask,
                })
            }
            Err(_) => Err(PolicyErrorKind::CidrBadAddress(addr.to_owned())),
        }
    }

    /// Whether the text `s` is an IP address inside this network.
    pub fn contains(&self, s: &[u8]) -> bool {
        // The longest textual IPv6 address (with an embedded IPv4 tail) is 45 bytes.
        if s.len() > 45 {
            return false;
        }
        let Ok(text) = std::str::from_utf8(s) else {
            return false;
        };
        match (self, text.parse::<IpAddr>()) {
            (Cidr::V4 { net, mask }, Ok(IpAddr::V4(a))) => u32::from(a) & mask == *net,
            (Cidr::V6 { net, mask }, Ok(IpAddr::V6(a))) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_membership() {
        let n = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(n.contains(b"10.0.0.0"));
        assert!(n.contains(b"10.0.0.255"));
        assert!(!n.contains(b"10.0.1.0"));
        assert!(!n.contains(b"::1"));
        assert!(!n.contains(b"not an ip"));
        let n6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(n6.contains(b"2001:db8::1"));
        assert!(!n6.contains(b"2001:db9::1"));
        assert!(!n6.contains(b"10.0.0.1"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(b"1.2.3.4"));
    }

    #[test]
    fn refuses_malformed_networks() {
        assert_eq!(Cidr::parse("10.0.0.0"), Err(PolicyErrorKind::CidrNoSlash));
        assert_eq!(
            Cidr::parse("10.0.0.0/x"),
            Err(PolicyErrorKind::CidrMaskNotInteger)
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(PolicyErrorKind::CidrMaskRange(32))
        );
        assert_eq!(
            Cidr::parse("10.0.0.300/8"),
            Err(PolicyErrorKind::CidrBadAddress("10.0.0.300".into()))
        );
    }
}
