//! Vary (RFC 9111 §4.1): which request header fields select a stored response, and how their
//! values are normalised so that equivalent requests select the same variant.

use http::header::VARY;
use http::{HeaderMap, HeaderName};

/// The field names a response's `Vary` nominates, lowercase, sorted and deduplicated.
/// `None` for `Vary: *` (never selectable, §4.1); an empty list for no `Vary` at all.
pub fn vary_names(resp_headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for line in resp_headers.get_all(VARY) {
        let Ok(line) = line.to_str() else { return None };
        for member in line.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if member == "*" {
                return None;
            }
            // A member that is not a valid field name can never match: be conservative.
            let name = HeaderName::from_bytes(member.as_bytes()).ok()?;
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// The normalised value of one nominated field in a request (§4.1): all field lines combined,
/// list members trimmed of whitespace and joined by ","; `None` when the field is absent
/// (which differs from present but empty).
pub fn normalised_value(req_headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = req_headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut members: Vec<String> = Vec::new();
    for line in lines {
        let text = String::from_utf8_lossy(line.as_bytes());
        members.extend(text.split(',').map(|m| m.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    Some(members.join(","))
}

/// A text that is equal for two requests exactly when they select the same variant: the
/// nominated names with their normalised values.
pub fn variant_selector(names: &[HeaderName], req_headers: &HeaderMap) -> String {
    let mut out = String::new();
    for name in names {
        out.push('\n');
        out.push_str(name.as_str());
        match normalised_value(req_headers, name) {
            Some(v) => {
                out.push('=');
                out.push_str(&v);
            }
            None => out.push('!'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn names_are_lowercased_sorted_and_deduplicated() {
        let r = h(&[("vary", "Accept-Encoding, accept-language"), ("vary", "ACCEPT-ENCODING")]);
        let names = vary_names(&r).unwrap();
        assert_eq!(
            names,
            vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("accept-language")]
        );
    }

    #[test]
    fn star_is_never_selectable() {
        assert_eq!(vary_names(&h(&[("vary", "accept, *")])), None);
    }

    #[test]
    fn no_vary_is_an_empty_list() {
        assert_eq!(vary_names(&HeaderMap::new()), Some(vec![]));
    }

    #[test]
    fn s4_1_whitespace_and_line_splitting_normalise_away() {
        let names = [HeaderName::from_static("accept-encoding")];
        let a = variant_selector(&names, &h(&[("accept-encoding", "gzip,  br")]));
        let b = variant_selector(&names, &h(&[("accept-encoding", "gzip"), ("accept-encoding", " br ")]));
        assert_eq!(a, b);
    }

    #[test]
    fn s4_1_absent_differs_from_empty_and_from_other_values() {
        let names = [HeaderName::from_static("accept-language")];
        let absent = variant_selector(&names, &HeaderMap::new());
        let empty = variant_selector(&names, &h(&[("accept-language", "")]));
        let en = variant_selector(&names, &h(&[("accept-language", "en")]));
        let fr = variant_selector(&names, &h(&[("accept-language", "fr")]));
        assert_ne!(absent, empty);
        assert_ne!(en, fr);
        assert_ne!(absent, en);
    }
}
