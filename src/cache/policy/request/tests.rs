use super::super::test_headers;
use super::*;

fn cc(value: &str) -> CacheControl {
    CacheControl::parse(&test_headers(&[("cache-control", value)]))
}

#[test]
fn reuse_table() {
    use Lifetime::{Explicit, Heuristic};
    use Reuse::*;
    let s = Duration::from_secs;
    // (name, request Cache-Control, response Cache-Control, lifetime, age, expected)
    let rows: Vec<(&str, &str, &str, Lifetime, Duration, Reuse)> = vec![
        ("§4.2 fresh when lifetime > age", "", "max-age=60", Explicit(s(60)), s(59), Fresh),
        ("§4.2 stale when age == lifetime", "", "max-age=60", Explicit(s(60)), s(60), Revalidate),
        ("§4.2.2 heuristic lifetime is fresh", "", "", Heuristic(s(300)), s(10), Fresh),
        ("§4.2 Lifetime::None is always stale", "", "", Lifetime::None, s(0), Revalidate),
        (
            "§5.2.2.4 response no-cache revalidates even when fresh",
            "",
            "no-cache, max-age=60",
            Explicit(s(60)),
            s(1),
            Revalidate,
        ),
        (
            "§5.2.1.4 request no-cache revalidates",
            "no-cache",
            "max-age=60",
            Explicit(s(60)),
            s(1),
            Revalidate,
        ),
        (
            "§5.2.1.4 request no-cache beats immutable",
            "no-cache",
            "max-age=600, immutable",
            Explicit(s(600)),
            s(1),
            Revalidate,
        ),
        ("§5.2.1.1 request max-age exceeded", "max-age=10", "max-age=60", Explicit(s(60)), s(11), Revalidate),
        ("§5.2.1.1 request max-age at the limit", "max-age=10", "max-age=60", Explicit(s(60)), s(10), Fresh),
        (
            "§5.2.1.1 request max-age=0 with non-zero age",
            "max-age=0",
            "max-age=60",
            Explicit(s(60)),
            Duration::from_millis(1),
            Revalidate,
        ),
        (
            "§5.2.1.1 request max-age does not extend freshness",
            "max-age=100",
            "max-age=60",
            Explicit(s(60)),
            s(70),
            Revalidate,
        ),
        (
            "§5.2.1.1 request max-age with max-stale",
            "max-age=100, max-stale",
            "max-age=60",
            Explicit(s(60)),
            s(70),
            ServeStale,
        ),
        ("§5.2.1.3 min-fresh satisfied", "min-fresh=20", "max-age=60", Explicit(s(60)), s(40), Fresh),
        (
            "§5.2.1.3 min-fresh not satisfied",
            "min-fresh=20",
            "max-age=60",
            Explicit(s(60)),
            s(41),
            Revalidate,
        ),
        (
            "§5.2.1.3 min-fresh on stale response beats max-stale",
            "min-fresh=0, max-stale",
            "max-age=60",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        (
            "§5.2.1.2 bare max-stale serves any staleness",
            "max-stale",
            "max-age=60",
            Explicit(s(60)),
            s(100_000),
            ServeStale,
        ),
        ("§5.2.1.2 max-stale within bound", "max-stale=30", "max-age=60", Explicit(s(60)), s(90), ServeStale),
        ("§5.2.1.2 max-stale exceeded", "max-stale=30", "max-age=60", Explicit(s(60)), s(91), Revalidate),
        (
            "§5.2.1.2 max-stale with Lifetime::None counts whole age",
            "max-stale=30",
            "",
            Lifetime::None,
            s(30),
            ServeStale,
        ),
        (
            "§5.2.2.2 must-revalidate beats max-stale",
            "max-stale",
            "max-age=60, must-revalidate",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        (
            "§5.2.2.2 must-revalidate still fresh",
            "",
            "max-age=60, must-revalidate",
            Explicit(s(60)),
            s(59),
            Fresh,
        ),
        (
            "§5.2.2.8 proxy-revalidate beats max-stale",
            "max-stale",
            "max-age=60, proxy-revalidate",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        (
            "§5.2.2.10 s-maxage implies proxy-revalidate",
            "max-stale",
            "s-maxage=60",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        (
            "§5.2.2.10 s-maxage blocks stale-while-revalidate",
            "",
            "s-maxage=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        (
            "RFC 5861 §3 SWR window start",
            "",
            "max-age=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(60),
            ServeStaleWhileRevalidate,
        ),
        (
            "RFC 5861 §3 SWR window edge inclusive",
            "",
            "max-age=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(90),
            ServeStaleWhileRevalidate,
        ),
        (
            "RFC 5861 §3 SWR window just passed",
            "",
            "max-age=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(90) + Duration::from_millis(1),
            Revalidate,
        ),
        (
            "RFC 5861 §3 SWR preferred over max-stale",
            "max-stale",
            "max-age=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(70),
            ServeStaleWhileRevalidate,
        ),
        (
            "RFC 5861 §3 max-stale after SWR window",
            "max-stale",
            "max-age=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(200),
            ServeStale,
        ),
        (
            "RFC 5861 §3 SWR blocked by must-revalidate",
            "",
            "max-age=60, must-revalidate, stale-while-revalidate=30",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        (
            "RFC 5861 §3 SWR blocked by request no-cache",
            "no-cache",
            "max-age=60, stale-while-revalidate=30",
            Explicit(s(60)),
            s(61),
            Revalidate,
        ),
        ("§4.2.4 plain stale response revalidates", "", "max-age=60", Explicit(s(60)), s(61), Revalidate),
    ];
    for (name, req, resp, lifetime, age, expected) in rows {
        assert_eq!(reuse_decision(&cc(req), &cc(resp), &lifetime, age), expected, "{name}");
    }
}

#[test]
fn stale_if_error_table() {
    use Lifetime::Explicit;
    let s = Duration::from_secs;
    let rows: Vec<(&str, &str, &str, Lifetime, Duration, bool)> = vec![
        (
            "RFC 5861 §4 response sie within window",
            "",
            "max-age=60, stale-if-error=100",
            Explicit(s(60)),
            s(160),
            true,
        ),
        (
            "RFC 5861 §4 response sie window exceeded",
            "",
            "max-age=60, stale-if-error=100",
            Explicit(s(60)),
            s(161),
            false,
        ),
        ("RFC 5861 §4 request sie alone", "stale-if-error=10", "max-age=60", Explicit(s(60)), s(65), true),
        (
            "RFC 5861 §4 both: smaller window wins",
            "stale-if-error=10",
            "max-age=60, stale-if-error=100",
            Explicit(s(60)),
            s(75),
            false,
        ),
        ("RFC 5861 §4 no sie anywhere", "", "max-age=60", Explicit(s(60)), s(61), false),
        (
            "§4.2.4 must-revalidate blocks sie",
            "",
            "max-age=60, must-revalidate, stale-if-error=100",
            Explicit(s(60)),
            s(61),
            false,
        ),
        (
            "§5.2.2.10 s-maxage blocks sie",
            "",
            "s-maxage=60, stale-if-error=100",
            Explicit(s(60)),
            s(61),
            false,
        ),
        (
            "§5.2.2.4 response no-cache blocks sie",
            "",
            "no-cache, stale-if-error=100",
            Explicit(s(60)),
            s(61),
            false,
        ),
        (
            "§5.2.1.4 request no-cache blocks sie",
            "no-cache",
            "stale-if-error=100",
            Explicit(s(60)),
            s(61),
            false,
        ),
        (
            "RFC 5861 §4 Lifetime::None staleness is the age",
            "",
            "stale-if-error=100",
            Lifetime::None,
            s(100),
            true,
        ),
    ];
    for (name, req, resp, lifetime, age, expected) in rows {
        assert_eq!(stale_if_error_allows(&cc(req), &cc(resp), &lifetime, age), expected, "{name}");
    }
}

#[test]
fn validators_and_conditional_headers() {
    let lm = "Tue, 15 Nov 1994 12:45:26 GMT";
    let both = test_headers(&[("etag", "W/\"v1\""), ("last-modified", lm)]);
    assert!(has_validator(&both), "§4.3.1 ETag and Last-Modified");
    let cond = conditional_headers(&both);
    assert_eq!(cond.get(IF_NONE_MATCH).unwrap(), "W/\"v1\"", "§4.3.1 If-None-Match from ETag");
    assert_eq!(cond.get(IF_MODIFIED_SINCE).unwrap(), lm, "§4.3.1 If-Modified-Since from Last-Modified");
    assert_eq!(cond.len(), 2);

    let etag_only = test_headers(&[("etag", "\"a\"")]);
    assert!(has_validator(&etag_only), "§4.3.1 ETag alone");
    assert_eq!(conditional_headers(&etag_only).len(), 1);

    let none = test_headers(&[("content-type", "text/plain")]);
    assert!(!has_validator(&none), "§4.3.1 no validator");
    assert!(conditional_headers(&none).is_empty());

    let bad_lm = test_headers(&[("last-modified", "yesterday")]);
    assert!(!has_validator(&bad_lm), "§4.3.1 invalid Last-Modified is no validator");
    assert!(conditional_headers(&bad_lm).is_empty());
}

#[test]
fn merge_304_table() {
    let stored = test_headers(&[
        ("content-type", "text/html"),
        ("content-length", "1234"),
        ("content-encoding", "gzip"),
        ("etag", "\"v1\""),
        ("cache-control", "max-age=60"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("x-keep", "stored"),
    ]);
    let not_modified = test_headers(&[
        ("content-length", "0"),
        ("content-encoding", "br"),
        ("etag", "\"v2\""),
        ("cache-control", "max-age=120"),
        ("set-cookie", "c=3"),
        ("date", "Tue, 15 Nov 1994 12:45:26 GMT"),
        ("connection", "close, X-Hop"),
        ("x-hop", "hop"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
    ]);
    let merged = merge_304(&stored, &not_modified);
    let all =
        |name: &str| -> Vec<&str> { merged.get_all(name).iter().map(|v| v.to_str().unwrap()).collect() };
    let rows: Vec<(&str, &str, Vec<&str>)> = vec![
        ("§4.3.4 Content-Length is never replaced", "content-length", vec!["1234"]),
        ("§4.3.4 stored body depends on Content-Encoding", "content-encoding", vec!["gzip"]),
        ("§4.3.4 ETag replaced", "etag", vec!["\"v2\""]),
        ("§4.3.4 Cache-Control replaced", "cache-control", vec!["max-age=120"]),
        ("§4.3.4 all lines of a field replaced", "set-cookie", vec!["c=3"]),
        ("§4.3.4 new field added", "date", vec!["Tue, 15 Nov 1994 12:45:26 GMT"]),
        ("§4.3.4 absent fields kept", "content-type", vec!["text/html"]),
        ("§4.3.4 absent custom field kept", "x-keep", vec!["stored"]),
        ("§3.1 Connection not merged", "connection", vec![]),
        ("§3.1 Connection-listed field not merged", "x-hop", vec![]),
        ("§3.1 Keep-Alive not merged", "keep-alive", vec![]),
        ("§3.1 Transfer-Encoding not merged", "transfer-encoding", vec![]),
    ];
    for (name, field, expected) in rows {
        assert_eq!(all(field), expected, "{name}");
    }
}

#[test]
fn client_conditional_table() {
    let lm = "Tue, 15 Nov 1994 12:45:26 GMT";
    let before = "Mon, 14 Nov 1994 12:45:26 GMT";
    let after = "Wed, 16 Nov 1994 12:45:26 GMT";
    let stored: &[(&str, &str)] = &[("etag", "\"abc\""), ("last-modified", lm)];
    let weak_stored: &[(&str, &str)] = &[("etag", "W/\"abc\"")];
    let no_etag: &[(&str, &str)] = &[("last-modified", lm)];
    let date_only: &[(&str, &str)] = &[("date", lm)];
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [(&'a str, &'a str)], bool);
    let rows: Vec<Row> = vec![
        ("RFC 9110 §13.1.2 exact strong match", vec![("if-none-match", "\"abc\"")], stored, true),
        ("RFC 9110 §13.1.2 no match", vec![("if-none-match", "\"xyz\"")], stored, false),
        ("RFC 9110 §13.1.2 star matches any stored response", vec![("if-none-match", "*")], no_etag, true),
        (
            "RFC 9110 §13.1.2 list containing the tag",
            vec![("if-none-match", "\"x\", \"abc\" ,\"y\"")],
            stored,
            true,
        ),
        (
            "RFC 9110 §13.1.2 list across lines",
            vec![("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")],
            stored,
            true,
        ),
        (
            "RFC 9110 §8.8.3.2 weak request tag matches strong",
            vec![("if-none-match", "W/\"abc\"")],
            stored,
            true,
        ),
        (
            "RFC 9110 §8.8.3.2 strong request tag matches weak",
            vec![("if-none-match", "\"abc\"")],
            weak_stored,
            true,
        ),
        (
            "RFC 9110 §8.8.3 comma inside a quoted tag",
            vec![("if-none-match", "\"a,bc\", \"abc,\"")],
            stored,
            false,
        ),
        ("RFC 9110 §13.1.2 stored response without ETag", vec![("if-none-match", "\"abc\"")], no_etag, false),
        (
            "RFC 9110 §13.1.3 INM wins over a matching IMS",
            vec![("if-none-match", "\"xyz\""), ("if-modified-since", after)],
            stored,
            false,
        ),
        ("RFC 9110 §13.1.3 IMS after Last-Modified", vec![("if-modified-since", after)], stored, true),
        ("RFC 9110 §13.1.3 IMS equal to Last-Modified", vec![("if-modified-since", lm)], stored, true),
        ("RFC 9110 §13.1.3 IMS before Last-Modified", vec![("if-modified-since", before)], stored, false),
        ("RFC 9110 §13.1.3 invalid IMS ignored", vec![("if-modified-since", "soon")], stored, false),
        (
            "RFC 9110 §13.1.3 multiple IMS lines ignored",
            vec![("if-modified-since", after), ("if-modified-since", after)],
            stored,
            false,
        ),
        ("§4.3.2 IMS falls back to stored Date", vec![("if-modified-since", after)], date_only, true),
        (
            "§4.3.2 IMS without any stored date never matches",
            vec![("if-modified-since", after)],
            weak_stored,
            false,
        ),
        ("§4.3.2 no conditional at all", vec![], stored, false),
    ];
    for (name, req, stored, expected) in rows {
        assert_eq!(
            client_conditional_matches(&test_headers(&req), &test_headers(stored)),
            expected,
            "{name}"
        );
    }
}
