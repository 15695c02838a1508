//! Validation of `host[:port]` as it appears in embedded-host paths, absolute-form requests,
//! CONNECT targets and `Host` fields. Pure functions.

/// Validates `host[:port]`: a DNS name, an IPv4 literal or a bracketed IPv6 literal, with no
/// user info, percent-encoding or whitespace. Returns the lowercase host and the port.
pub fn parse_authority(authority: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    if authority.contains('@') {
        return Err("user info is not allowed");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or("unclosed '['")?;
        let addr = &v6[..close];
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| "bad IPv6 address")?;
        let after = &v6[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("junk after IPv6 address"),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        Some(p) => parse_port(p)?,
        None => default_port,
    };
    if !host.starts_with('[') && !valid_host_name(&host) {
        return Err("not a host name or IP address");
    }
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad port");
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("port out of range"),
        Ok(n) => Ok(n),
    }
}

/// RFC 1123 host names (letters, digits, hyphens; labels of 1-63; at most 253 in all). IPv4
/// literals pass as they are digits and dots.
/// One pass over the bytes: every request's target goes through here.
fn valid_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h).as_bytes();
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let (mut label, mut prev) = (0usize, b'.');
    for &b in h {
        match b {
            b'.' if label == 0 || prev == b'-' => return false,
            b'.' => label = 0,
            b'-' if label == 0 => return false,
            b'-' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' if label < 63 => label += 1,
            _ => return false,
        }
        prev = b;
    }
    label > 0 && prev != b'-'
}

/// A short, log-safe rendering of untrusted input.
pub fn printable(s: &str) -> String {
    s.chars().take(80).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(parse_authority("Example.COM", 80), Ok(("example.com".into(), 80)));
        assert_eq!(parse_authority("h:8080", 80), Ok(("h".into(), 8080)));
        assert_eq!(parse_authority("[::1]:81", 80), Ok(("[::1]".into(), 81)));
        assert_eq!(parse_authority("[::1]", 443), Ok(("[::1]".into(), 443)));
        for bad in ["u@h", "h:0", "h:", "h:65536", "-h", "h_x", "h%41", "[::1", "[::1]x", "a..b", ""] {
            assert!(parse_authority(bad, 80).is_err(), "{bad}");
        }
        assert!(parse_authority(&"a".repeat(64), 80).is_err());
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_name = ["a"; 127].join("."); // 253 bytes
        let too_long_name = format!("{long_name}a");
        for good in [
            "a",
            "localhost",
            "example.com",
            "example.com.",
            "a-b.c",
            "127.0.0.1",
            "x1.y2",
            &long_label,
            &long_name,
        ] {
            assert!(valid_host_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a..b",
            ".a",
            "-a",
            "a-",
            "a.-b",
            "a-.b",
            "a_b",
            "a b",
            "ex%41",
            "é",
            &too_long_label,
            &too_long_name,
        ] {
            assert!(!valid_host_name(bad), "{bad}");
        }
    }
}
