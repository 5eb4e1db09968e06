//! The hosts a function may call out to over HTTP: its `allowed_hosts` patterns.

use std::sync::Arc;

/// The hosts a function may call: patterns `SCHEME://HOST[:PORT]`, where SCHEME is
/// `http`, `https` or `*`, HOST a name, an IP address (IPv6 in brackets), `*.SUFFIX`
/// (any name below SUFFIX) or `*`, and PORT a number or `*`; without a port only the
/// scheme's default one (80 or 443) matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Arc<[HostPattern]>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// `None`: any scheme.
    scheme: Option<&'static str>,
    host: HostMatch,
    port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `.example.com`: names ending with it.
    Below(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    Any,
    /// The request's scheme's default port.
    Default,
    Exact(u16),
}

impl AllowedHosts {
    /// Parses the patterns; the error names the first one that is not one.
    pub fn parse(patterns: &[String]) -> Result<AllowedHosts, String> {
        let parsed = patterns
            .iter()
            .map(|p| parse_pattern(p).map_err(|why| format!("`{p}` {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts(parsed.into()))
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let default_port = default_port(scheme);
        self.0.iter().any(|p| {
            p.scheme.is_none_or(|s| s == scheme)
                && match &p.host {
                    HostMatch::Any => true,
                    HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
                    HostMatch::Below(suffix) => {
                        host.len() > suffix.len()
                            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    }
                }
                && match p.port {
                    PortMatch::Any => true,
                    PortMatch::Default => port == default_port,
                    PortMatch::Exact(n) => port == n,
                }
        })
    }
}

/// The port a URL of `scheme` means when it names none.
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

fn parse_pattern(p: &str) -> Result<HostPattern, &'static str> {
    const FORM: &str = "is not SCHEME://HOST[:PORT] (for example https://api.example.com, http://127.0.0.1:*, https://*.example.com)";
    let (scheme, rest) = p.split_once("://").ok_or(FORM)?;
    let scheme = match scheme {
        "*" => None,
        "http" => Some("http"),
        "https" => Some("https"),
        _ => return Err("has a scheme other than http, https or *"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("has a path: name the host only");
    }
    // A port is what follows the last colon outside an IPv6 literal's brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let port = match port {
        None => PortMatch::Default,
        Some("*") => PortMatch::Any,
        Some(n) => PortMatch::Exact(
            n.parse()
                .map_err(|_| "has a port that is not a number or *")?,
        ),
    };
    let host = if host == "*" {
        HostMatch::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        check_name(suffix)?;
        HostMatch::Below(format!(".{}", suffix.to_ascii_lowercase()))
    } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: std::net::Ipv6Addr = v6
            .parse()
            .map_err(|_| "has an IPv6 address that is not one")?;
        HostMatch::Exact(format!("[{ip}]"))
    } else {
        check_name(host)?;
        HostMatch::Exact(host.to_ascii_lowercase())
    };
    Ok(HostPattern { scheme, host, port })
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(())
    } else {
        Err("has a host that is not a name or an address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        AllowedHosts::parse(&owned).unwrap()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let none = AllowedHosts::default();
        assert!(!none.allows("https", "example.com", 443));
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let a = allowed(&[
            "https://api.example.com",
            "http://127.0.0.1:*",
            "*://*.mail.test:2525",
            "https://[::1]:8443/",
        ]);
        let https = "https";
        let http = "http";
        assert!(a.allows(https, "api.example.com", 443));
        assert!(a.allows(https, "API.Example.com", 443), "names ignore case");
        assert!(
            !a.allows(https, "api.example.com", 8443),
            "only the default port"
        );
        assert!(
            !a.allows(http, "api.example.com", 80),
            "only the scheme named"
        );
        assert!(!a.allows(https, "evil-api.example.com", 443));
        assert!(a.allows(http, "127.0.0.1", 9));
        assert!(!a.allows(https, "127.0.0.1", 9));
        assert!(a.allows(http, "smtp.mail.test", 2525));
        assert!(a.allows(https, "a.b.mail.test", 2525));
        assert!(!a.allows(https, "mail.test", 2525), "below the suffix only");
        assert!(!a.allows(https, "xmail.test", 2525));
        assert!(a.allows(https, "[::1]", 8443));
    }

    #[test]
    fn a_pattern_that_is_not_one_is_named() {
        for (bad, why) in [
            ("api.example.com", "SCHEME://HOST"),
            ("ftp://example.com", "scheme"),
            ("https://example.com/path", "path"),
            ("https://example.com:http", "port"),
            ("https://exa mple.com", "host"),
            ("https://", "host"),
            ("https://[not-v6]", "IPv6"),
        ] {
            let err = AllowedHosts::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
    }
}
