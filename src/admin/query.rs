//! Query strings of the admin API: percent-decoding and checked parameters.

use std::collections::HashMap;

/// A query string's parameters, decoded; a repeated or unknown name is an error.
pub(super) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).ok_or("bad percent-encoding in the query")?;
        let value = decode(value).ok_or_else(|| format!("bad percent-encoding in {name}"))?;
        if !allowed.contains(&name.as_str()) {
            return Err(format!("unknown parameter {name:?} (allowed: {})", allowed.join(", ")));
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("parameter {name} given twice"));
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_checked() {
        let q = parse(Some("url=http%3A%2F%2Fh%2Fa+b&limit=5"), &["url", "limit"]).unwrap();
        assert_eq!(q["url"], "http://h/a b");
        assert!(parse(Some("nope=1"), &["url"]).unwrap_err().contains("nope"));
        assert!(parse(Some("url=%zz"), &["url"]).is_err());
        assert!(parse(Some("url=a&url=b"), &["url"]).is_err());
    }
}
