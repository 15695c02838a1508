//! Byte-range answers (RFC 9110 §14) from a stored complete response of known length.
//!
//! Everything here is pure: [`decide`] picks 200 / 206 / 416, [`content_range`] and
//! [`unsatisfied_range`] format `Content-Range`, and [`multipart`] builds a
//! `multipart/byteranges` body (§14.6).

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;

/// Most range-specs accepted in one request; more is treated as invalid (a DoS guard, §14.2).
const MAX_RANGES: usize = 100;

/// One satisfiable range, inclusive bounds, within a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes covered (never zero for a resolved range).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Whether two ranges overlap or are adjacent, i.e. their union is one range.
    fn touches(&self, other: &ByteRange) -> bool {
        self.start <= other.end.saturating_add(1) && other.start <= self.end.saturating_add(1)
    }
}

/// How to answer a request for a stored complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// No Range header, not a GET, an unsupported unit, a syntactically invalid Range
    /// (§14.2: a server MAY ignore it), or a failed If-Range: serve the full 200.
    Full,
    /// Serve 206 with these ranges (1 = single part; >1 = multipart/byteranges).
    /// Overlapping/adjacent ranges are coalesced; otherwise order of first appearance is kept.
    Partial(Vec<ByteRange>),
    /// 416: none of the ranges overlaps the body (§15.5.17); send `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// One parsed range-spec (§14.1.1), not yet resolved against a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`.
    FromTo(u64, u64),
    /// `first-`.
    From(u64),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

/// Decides how to answer a request. `method_is_get`: only GET honours Range (§14.2).
/// `if_range`: the request's If-Range, checked against the stored `etag` / `last_modified`
/// (§13.1.5): an entity-tag must match strongly; an HTTP-date must equal Last-Modified exactly
/// and counts only when `last_modified_strong`. A failed If-Range means [`RangeDecision::Full`].
pub fn decide(
    method_is_get: bool,
    range: Option<&HeaderValue>,
    if_range: Option<&HeaderValue>,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
    last_modified_strong: bool,
    len: u64,
) -> RangeDecision {
    let Some(range) = range.filter(|_| method_is_get) else {
        return RangeDecision::Full;
    };
    if let Some(cond) = if_range {
        if !if_range_matches(cond, etag, last_modified, last_modified_strong) {
            return RangeDecision::Full;
        }
    }
    let Some(specs) = parse(range) else {
        return RangeDecision::Full;
    };
    let ranges = resolve(&specs, len);
    if ranges.is_empty() {
        RangeDecision::Unsatisfiable
    } else {
        RangeDecision::Partial(ranges)
    }
}

/// Evaluates an If-Range condition (§13.1.5).
fn if_range_matches(
    cond: &HeaderValue,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
    last_modified_strong: bool,
) -> bool {
    let Ok(cond) = cond.to_str() else { return false };
    let cond = cond.trim_matches([' ', '\t']);
    if cond.starts_with('"') || cond.starts_with("W/") {
        // Strong comparison: neither tag may be weak and the opaque-tags must be identical.
        let stored = etag.and_then(|v| v.to_str().ok()).map(|s| s.trim_matches([' ', '\t']));
        return match (strong_tag(cond), stored.and_then(strong_tag)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
    }
    if !last_modified_strong {
        return false;
    }
    let date = |v: &str| httpdate::parse_http_date(v.trim_matches([' ', '\t'])).ok();
    match (date(cond), last_modified.and_then(|v| v.to_str().ok()).and_then(date)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The opaque-tag of a well-formed strong entity-tag, or None if weak or malformed.
fn strong_tag(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    inner.bytes().all(etagc).then_some(inner)
}

/// Parses a `bytes=` range set (§14.1.1 / §14.1.2): `first-last`, `first-`, `-suffix`, in a
/// comma list with optional whitespace and empty elements. Returns None for invalid syntax,
/// a unit other than `bytes` (case-insensitive), an empty set, first > last, overflow, or more
/// than 100 ranges. `-0` is kept as `Suffix(0)` (unsatisfiable, not invalid).
pub fn parse(value: &HeaderValue) -> Option<Vec<RangeSpec>> {
    let (unit, set) = value.to_str().ok()?.split_once('=')?;
    if !unit.trim_matches([' ', '\t']).eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(',').map(|s| s.trim_matches([' ', '\t'])).filter(|s| !s.is_empty()) {
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = item.split_once('-')?;
        let spec = match (first.is_empty(), last.is_empty()) {
            (true, true) => return None,
            (true, false) => RangeSpec::Suffix(digits(last)?),
            (false, true) => RangeSpec::From(digits(first)?),
            (false, false) => {
                let (first, last) = (digits(first)?, digits(last)?);
                if first > last {
                    return None;
                }
                RangeSpec::FromTo(first, last)
            }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// `1*DIGIT` as a u64; None for anything else (signs, spaces) or overflow.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves specs against a body of `len` bytes: clamps `last` to `len - 1`, drops the
/// unsatisfiable ones (first >= len, suffix 0, or len == 0) and coalesces overlapping or
/// adjacent ranges, keeping the order of first appearance otherwise.
pub fn resolve(specs: &[RangeSpec], len: u64) -> Vec<ByteRange> {
    let mut out: Vec<ByteRange> = Vec::new();
    if len == 0 {
        return out;
    }
    for spec in specs {
        let r = match *spec {
            RangeSpec::FromTo(first, last) if first < len => {
                ByteRange { start: first, end: last.min(len - 1) }
            }
            RangeSpec::From(first) if first < len => ByteRange { start: first, end: len - 1 },
            RangeSpec::Suffix(n) if n > 0 => ByteRange { start: len.saturating_sub(n), end: len - 1 },
            _ => continue,
        };
        push_coalesced(&mut out, r);
    }
    out
}

/// Adds `r` to `out`, merging it with every range it touches (transitively); the union takes
/// the position of the earliest range it absorbed.
fn push_coalesced(out: &mut Vec<ByteRange>, mut r: ByteRange) {
    let mut pos: Option<usize> = None;
    while let Some(i) = out.iter().position(|o| o.touches(&r)) {
        let o = out.remove(i);
        r = ByteRange { start: r.start.min(o.start), end: r.end.max(o.end) };
        pos = Some(pos.map_or(i, |p| p.min(i)));
    }
    match pos {
        Some(p) => out.insert(p, r),
        None => out.push(r),
    }
}

/// `Content-Range: bytes start-end/len` (§14.4).
pub fn content_range(r: ByteRange, len: u64) -> HeaderValue {
    ascii_value(format!("bytes {}-{}/{}", r.start, r.end, len))
}

/// `Content-Range: bytes */len` for a 416 answer (§14.4).
pub fn unsatisfied_range(len: u64) -> HeaderValue {
    ascii_value(format!("bytes */{len}"))
}

/// A header value from a string known to be plain visible ASCII.
fn ascii_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("digits and ASCII punctuation form a valid header value")
}

/// A multipart boundary: `httpcache-` and 16 hex digits of a bit-mixed `seed`.
pub fn boundary_for(seed: u64) -> String {
    // SplitMix64 finaliser, so consecutive seeds give unrelated-looking boundaries.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("httpcache-{:016x}", z ^ (z >> 31))
}

/// A `multipart/byteranges` body (§14.6) holding `ranges` of `body`, each part carrying
/// `content_type` (if any) and its `Content-Range`. The caller guarantees `boundary` does not
/// occur in the body. Returns the body and the matching `Content-Type` header value.
///
/// # Panics
/// If a range lies outside `body`, or `boundary` holds control or non-ASCII characters.
pub fn multipart(
    body: &Bytes,
    ranges: &[ByteRange],
    content_type: Option<&HeaderValue>,
    boundary: &str,
) -> (Bytes, HeaderValue) {
    let len = body.len() as u64;
    let payload: u64 = ranges.iter().map(ByteRange::len).sum();
    let mut out = BytesMut::with_capacity(payload as usize + ranges.len() * (boundary.len() + 96) + 64);
    for &r in ranges {
        assert!(r.start <= r.end && r.end < len, "range {r:?} outside a body of {len} bytes");
        out.put_slice(b"\r\n--");
        out.put_slice(boundary.as_bytes());
        if let Some(ct) = content_type {
            out.put_slice(b"\r\nContent-Type: ");
            out.put_slice(ct.as_bytes());
        }
        out.put_slice(b"\r\nContent-Range: ");
        out.put_slice(content_range(r, len).as_bytes());
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&body[r.start as usize..=r.end as usize]);
    }
    out.put_slice(b"\r\n--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"--\r\n");
    // The parameter must be quoted unless the boundary is a token (§5.6.2, §5.6.6).
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let ct = if !boundary.is_empty() && boundary.chars().all(tchar) {
        format!("multipart/byteranges; boundary={boundary}")
    } else {
        format!("multipart/byteranges; boundary=\"{boundary}\"")
    };
    let ct = HeaderValue::try_from(ct).expect("boundary must be visible ASCII");
    (out.freeze(), ct)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LM: &str = "Tue, 15 Nov 1994 08:12:31 GMT";

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn partial(rs: &[(u64, u64)]) -> RangeDecision {
        RangeDecision::Partial(rs.iter().map(|&(start, end)| ByteRange { start, end }).collect())
    }

    /// `n` disjoint one-byte ranges: `bytes=0-0,2-2,4-4,...`.
    fn many(n: u64) -> String {
        let items: Vec<String> = (0..n).map(|i| format!("{0}-{0}", 2 * i)).collect();
        format!("bytes={}", items.join(","))
    }

    /// (rule, GET?, Range, If-Range, ETag, Last-Modified, LM strong?, len, expected)
    type DecideRow<'a> = (
        &'a str,
        bool,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        bool,
        u64,
        RangeDecision,
    );

    #[test]
    fn decide_table() {
        use RangeDecision::{Full, Unsatisfiable};
        let (r100, r101) = (many(100), many(101));
        let want100 =
            RangeDecision::Partial((0..100).map(|i| ByteRange { start: 2 * i, end: 2 * i }).collect());
        let strong = Some("\"v1\"");
        #[rustfmt::skip]
        let rows: Vec<DecideRow> = vec![
            ("14.2 no Range: full", true, None, None, None, None, false, 100, Full),
            ("14.1.2 first-last", true, Some("bytes=0-9"), None, None, None, false, 100, partial(&[(0, 9)])),
            ("14.1.2 first- open-ended", true, Some("bytes=90-"), None, None, None, false, 100, partial(&[(90, 99)])),
            ("14.1.2 -suffix", true, Some("bytes=-10"), None, None, None, false, 100, partial(&[(90, 99)])),
            ("14.1.2 suffix longer than body: whole body", true, Some("bytes=-500"), None, None, None, false, 100, partial(&[(0, 99)])),
            ("14.1.2 last beyond length clamped", true, Some("bytes=95-500"), None, None, None, false, 100, partial(&[(95, 99)])),
            ("14.1.2 last = len-1 is the whole tail", true, Some("bytes=0-99"), None, None, None, false, 100, partial(&[(0, 99)])),
            ("14.1.2 single byte", true, Some("bytes=7-7"), None, None, None, false, 100, partial(&[(7, 7)])),
            ("15.5.17 first beyond length: 416", true, Some("bytes=100-200"), None, None, None, false, 100, Unsatisfiable),
            ("15.5.17 first = len (open-ended): 416", true, Some("bytes=100-"), None, None, None, false, 100, Unsatisfiable),
            ("14.1.2 suffix of zero length: 416", true, Some("bytes=-0"), None, None, None, false, 100, Unsatisfiable),
            ("15.5.17 one satisfiable range is enough", true, Some("bytes=200-300,5-6"), None, None, None, false, 100, partial(&[(5, 6)])),
            ("14.6 several ranges: multipart", true, Some("bytes=0-1,10-19"), None, None, None, false, 100, partial(&[(0, 1), (10, 19)])),
            ("14.2 overlapping ranges coalesced", true, Some("bytes=0-10,5-20"), None, None, None, false, 100, partial(&[(0, 20)])),
            ("14.2 adjacent ranges coalesced", true, Some("bytes=0-4,5-9"), None, None, None, false, 100, partial(&[(0, 9)])),
            ("14.2 suffix overlapping first-last coalesced", true, Some("bytes=80-95,-10"), None, None, None, false, 100, partial(&[(80, 99)])),
            ("14.2 coalescing keeps first-appearance order", true, Some("bytes=50-59,0-4,55-70"), None, None, None, false, 100, partial(&[(50, 70), (0, 4)])),
            ("14.2 a bridging range merges both neighbours", true, Some("bytes=20-29,0-4,6-9,5-5"), None, None, None, false, 100, partial(&[(20, 29), (0, 9)])),
            ("14.2 merged range sits where its earliest part was", true, Some("bytes=30-39,0-4,20-29"), None, None, None, false, 100, partial(&[(20, 39), (0, 4)])),
            ("14.2 invalid: non-digits", true, Some("bytes=abc"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: first > last", true, Some("bytes=5-2"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: empty range set", true, Some("bytes="), None, None, None, false, 100, Full),
            ("5.6.1 invalid: only empty list elements", true, Some("bytes= , ,"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: bare dash", true, Some("bytes=-"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: sign is not a DIGIT", true, Some("bytes=+1-2"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: whitespace inside a range-spec", true, Some("bytes=0 - 1"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: one bad spec spoils the set", true, Some("bytes=0-1,x"), None, None, None, false, 100, Full),
            ("14.1.1 invalid: position overflows u64", true, Some("bytes=0-18446744073709551616"), None, None, None, false, 100, Full),
            ("14.1.1 u64::MAX last is fine and clamped", true, Some("bytes=0-18446744073709551615"), None, None, None, false, 100, partial(&[(0, 99)])),
            ("14.1 unknown unit ignored", true, Some("items=0-1"), None, None, None, false, 100, Full),
            ("14.1 missing '=' invalid", true, Some("bytes 0-1"), None, None, None, false, 100, Full),
            ("14.1 unit is case-insensitive", true, Some("BYTES=0-1"), None, None, None, false, 100, partial(&[(0, 1)])),
            ("5.6.1 optional whitespace around list items", true, Some("bytes= 0-1 , 3-4"), None, None, None, false, 100, partial(&[(0, 1), (3, 4)])),
            ("5.6.1 empty list elements tolerated", true, Some("bytes=,0-1,,3-4,"), None, None, None, false, 100, partial(&[(0, 1), (3, 4)])),
            ("14.2 100 ranges accepted", true, Some(&r100), None, None, None, false, 1000, want100),
            ("14.2 more than 100 ranges ignored (DoS guard)", true, Some(&r101), None, None, None, false, 1000, Full),
            ("15.5.17 zero-length body: 416", true, Some("bytes=0-0"), None, None, None, false, 0, Unsatisfiable),
            ("15.5.17 zero-length body, suffix: 416", true, Some("bytes=-5"), None, None, None, false, 0, Unsatisfiable),
            ("14.2 Range ignored for non-GET", false, Some("bytes=0-1"), None, None, None, false, 100, Full),
            ("13.1.5 If-Range strong ETag match", true, Some("bytes=0-1"), Some("\"v1\""), strong, None, false, 100, partial(&[(0, 1)])),
            ("13.1.5 If-Range vs weak stored ETag never matches", true, Some("bytes=0-1"), Some("\"v1\""), Some("W/\"v1\""), None, false, 100, Full),
            ("13.1.5 If-Range weak ETag never matches", true, Some("bytes=0-1"), Some("W/\"v1\""), Some("W/\"v1\""), None, false, 100, Full),
            ("13.1.5 If-Range ETag mismatch", true, Some("bytes=0-1"), Some("\"v2\""), strong, None, false, 100, Full),
            ("13.1.5 If-Range ETag without stored ETag", true, Some("bytes=0-1"), Some("\"v1\""), None, Some(LM), true, 100, Full),
            ("13.1.5 If-Range unterminated entity-tag", true, Some("bytes=0-1"), Some("\"v1"), strong, None, false, 100, Full),
            ("13.1.5 If-Range date = strong Last-Modified", true, Some("bytes=0-1"), Some(LM), None, Some(LM), true, 100, partial(&[(0, 1)])),
            ("13.1.5 If-Range date vs weak Last-Modified", true, Some("bytes=0-1"), Some(LM), None, Some(LM), false, 100, Full),
            ("13.1.5 If-Range date differs", true, Some("bytes=0-1"), Some("Tue, 15 Nov 1994 08:12:32 GMT"), None, Some(LM), true, 100, Full),
            ("13.1.5 If-Range date without Last-Modified", true, Some("bytes=0-1"), Some(LM), strong, None, true, 100, Full),
            ("13.1.5 If-Range neither tag nor date", true, Some("bytes=0-1"), Some("yesterday"), strong, Some(LM), true, 100, Full),
            ("13.1.5 If-Range match, then Range still unsatisfiable", true, Some("bytes=500-"), Some("\"v1\""), strong, None, false, 100, Unsatisfiable),
            ("13.1.5 If-Range match, then Range still invalid", true, Some("bytes=x"), Some("\"v1\""), strong, None, false, 100, Full),
            ("13.1.5 If-Range without Range is ignored", true, None, Some("\"v2\""), strong, None, false, 100, Full),
        ];
        for (rule, get, range, if_range, etag, lm, lm_strong, len, want) in rows {
            let (range, if_range, etag, lm) = (range.map(hv), if_range.map(hv), etag.map(hv), lm.map(hv));
            let got =
                decide(get, range.as_ref(), if_range.as_ref(), etag.as_ref(), lm.as_ref(), lm_strong, len);
            assert_eq!(got, want, "{rule}");
        }
    }

    #[test]
    fn parse_table() {
        use RangeSpec::*;
        let rows: &[(&str, &str, Option<Vec<RangeSpec>>)] = &[
            ("14.1.2 all three forms", "bytes=0-1,5-,-3", Some(vec![FromTo(0, 1), From(5), Suffix(3)])),
            ("14.1.2 suffix-length 0 is valid syntax", "bytes=-0", Some(vec![Suffix(0)])),
            ("14.1.1 leading zeros are DIGITs", "bytes=007-9", Some(vec![FromTo(7, 9)])),
            (
                "14.1.1 duplicates kept until resolution",
                "bytes=1-2,1-2",
                Some(vec![FromTo(1, 2), FromTo(1, 2)]),
            ),
            ("14.1.1 two dashes invalid", "bytes=1-2-3", None),
            ("14.1.1 tab is OWS", "bytes=\t1-2\t", Some(vec![FromTo(1, 2)])),
        ];
        for (rule, input, want) in rows {
            assert_eq!(parse(&hv(input)), *want, "{rule}");
        }
    }

    #[test]
    fn resolve_table() {
        use RangeSpec::*;
        let br = |start, end| ByteRange { start, end };
        let rows: &[(&str, &[RangeSpec], u64, Vec<ByteRange>)] = &[
            ("14.1.2 last clamped to len-1", &[FromTo(5, 50)], 10, vec![br(5, 9)]),
            ("14.1.2 suffix covers whole short body", &[Suffix(u64::MAX)], 3, vec![br(0, 2)]),
            ("15.5.17 everything dropped on an empty body", &[From(0), Suffix(1)], 0, vec![]),
            ("14.2 duplicates coalesced", &[FromTo(1, 2), FromTo(1, 2)], 10, vec![br(1, 2)]),
            (
                "14.2 gap of one byte not coalesced",
                &[FromTo(0, 1), FromTo(3, 4)],
                10,
                vec![br(0, 1), br(3, 4)],
            ),
        ];
        for (rule, specs, len, want) in rows {
            assert_eq!(resolve(specs, *len), *want, "{rule}");
        }
        assert_eq!(br(3, 7).len(), 5, "ByteRange::len is inclusive");
    }

    #[test]
    fn content_range_table() {
        let br = |start, end| ByteRange { start, end };
        let max = u64::MAX;
        let rows: &[(&str, HeaderValue, &str)] = &[
            ("14.4 single byte", content_range(br(0, 0), 1), "bytes 0-0/1"),
            ("14.4 inclusive end", content_range(br(5, 9), 10), "bytes 5-9/10"),
            (
                "14.4 large positions",
                content_range(br(max - 2, max - 1), max),
                "bytes 18446744073709551613-18446744073709551614/18446744073709551615",
            ),
            ("14.4 unsatisfied-range", unsatisfied_range(100), "bytes */100"),
            ("14.4 unsatisfied-range, empty body", unsatisfied_range(0), "bytes */0"),
        ];
        for (rule, got, want) in rows {
            assert_eq!(got, want, "{rule}");
        }
    }

    #[test]
    fn multipart_table() {
        let body = Bytes::from_static(b"0123456789");
        let two = [ByteRange { start: 0, end: 1 }, ByteRange { start: 5, end: 7 }];
        let rows: &[(&str, Option<&str>, &str, &str, &str)] = &[
            (
                "14.6 parts carry Content-Type and Content-Range",
                Some("text/plain"),
                "B",
                "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
                 \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-7/10\r\n\r\n567\r\n--B--\r\n",
                "multipart/byteranges; boundary=B",
            ),
            (
                "14.6 no Content-Type line without a stored type",
                None,
                "B",
                "\r\n--B\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
                 \r\n--B\r\nContent-Range: bytes 5-7/10\r\n\r\n567\r\n--B--\r\n",
                "multipart/byteranges; boundary=B",
            ),
            (
                "5.6.6 non-token boundary is quoted",
                None,
                "a:b",
                "\r\n--a:b\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
                 \r\n--a:b\r\nContent-Range: bytes 5-7/10\r\n\r\n567\r\n--a:b--\r\n",
                "multipart/byteranges; boundary=\"a:b\"",
            ),
        ];
        for (rule, ct, boundary, want_body, want_ct) in rows {
            let ct = ct.map(hv);
            let (got_body, got_ct) = multipart(&body, &two, ct.as_ref(), boundary);
            assert_eq!(got_body, Bytes::from(want_body.to_string()), "{rule}");
            assert_eq!(got_ct, want_ct, "{rule}");
        }
    }

    #[test]
    fn boundary_for_is_a_token_of_fixed_shape() {
        for seed in [0, 1, u64::MAX] {
            let b = boundary_for(seed);
            let hex = b.strip_prefix("httpcache-").expect("prefix");
            assert_eq!(hex.len(), 16, "{b}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{b}");
        }
        assert_ne!(boundary_for(0), boundary_for(1));
    }
}
