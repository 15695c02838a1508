//! Parsing and validating settings: byte sizes, durations, and the checks that span flags.

use std::time::Duration;

pub mod file;
pub mod load;
pub mod rule;
pub mod shared;

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, TB: powers of 1000;
/// KiB, MiB, GiB, TiB and K, M, G, T: powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 512MiB, 10GB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' (use B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with an optional unit (ms, s, m, h, d; seconds by default).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 30s, 500ms)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("unknown duration unit '{other}' (use ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is out of range"))
}

/// An optional header field name from the command line ("none" for no field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldName(pub Option<http::HeaderName>);

/// Parses a header field name, or "none".
pub fn parse_field_name(s: &str) -> Result<FieldName, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(FieldName(None));
    }
    http::HeaderName::from_bytes(s.as_bytes())
        .map(|n| FieldName(Some(n)))
        .map_err(|_| format!("'{s}' is not a header field name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
