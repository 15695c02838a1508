use super::*;

fn routing(origins: &[&str], embedded: bool) -> Routing {
    Routing {
        upstream_port: 80,
        origins: origins.iter().map(|o| OriginRule::parse(o).unwrap()).collect(),
        preserve_host: false,
        embedded,
        forward: true,
    }
}

fn get(uri: &str, host: Option<&str>, r: &Routing) -> (Mode, Route) {
    route_request(&Method::GET, Version::HTTP_11, &uri.parse().unwrap(), host, false, r)
}

fn target(route: Route) -> Target {
    match route {
        Route::Target(t) => t,
        other => panic!("not a target: {other:?}"),
    }
}

#[test]
fn absolute_form_is_forward_proxied_with_the_schemes_port() {
    let r = routing(&[], true);
    let (mode, route) = get("http://Example.com/a?b", Some("example.com"), &r);
    let t = target(route);
    assert_eq!(mode, Mode::Forward);
    assert_eq!(
        (t.scheme, t.host.as_str(), t.port, t.path_and_query.as_str()),
        (Scheme::Http, "example.com", 80, "/a?b")
    );
    assert_eq!(t.key().url(), "http://example.com:80/a?b");
    let t = target(get("https://h:8443", None, &r).1);
    assert_eq!((t.scheme, t.port, t.path_and_query.as_str()), (Scheme::Https, 8443, "/"));
    assert!(matches!(get("http://u@h/", None, &r).1, Route::Invalid(_)));
}

#[test]
fn forward_and_embedded_share_keys() {
    let r = routing(&[], true);
    let fwd = target(get("http://h:8080/x", None, &r).1);
    let emb = target(get("/h:8080/x", None, &r).1);
    assert_eq!(fwd.key(), emb.key());
}

#[test]
fn forward_can_be_disabled() {
    let mut r = routing(&[], true);
    r.forward = false;
    assert!(matches!(get("http://h/x", None, &r).1, Route::Refused(StatusCode::FORBIDDEN, _)));
}

#[test]
fn http2_requests_are_origin_form() {
    let r = routing(&[], true);
    let uri: Uri = "https://proxy:8888/h:81/x".parse().unwrap();
    let (mode, route) = route_request(&Method::GET, Version::HTTP_2, &uri, None, true, &r);
    assert_eq!(mode, Mode::Embedded);
    assert_eq!(target(route).name(), "h:81");
}

#[test]
fn reverse_proxy_keys_by_what_the_client_named() {
    let mut r = routing(&["http://127.0.0.1:9000"], false);
    let (mode, route) = get("/p?q", Some("WWW.Site.test"), &r);
    let t = target(route);
    assert_eq!(mode, Mode::Reverse);
    assert_eq!(t.uri(), "http://127.0.0.1:9000/p?q");
    assert_eq!(t.host_field(), "127.0.0.1:9000");
    assert_eq!(t.key().url(), "http://www.site.test:80/p?q");
    r.preserve_host = true;
    let t = target(get("/p", Some("www.site.test:8888"), &r).1);
    assert_eq!(t.host_field(), "www.site.test:8888");
    assert_eq!(t.key().url(), "http://www.site.test:8888/p");
    // An HTTP/1.0 request without Host is keyed by the origin.
    let t = target(get("/p", None, &r).1);
    assert_eq!(t.key().url(), "http://127.0.0.1:9000/p");
}

#[test]
fn reverse_rules_by_host_and_embedded_fallback() {
    let r = routing(&["a.test=http://a:1"], false);
    assert!(matches!(get("/x", Some("b.test"), &r).1, Route::Refused(StatusCode::MISDIRECTED_REQUEST, _)));
    assert_eq!(target(get("/x", Some("a.test"), &r).1).host, "a");
    let r = routing(&["a.test=http://a:1"], true);
    let (mode, route) = get("/b:2/x", Some("b.test"), &r);
    assert_eq!((mode, target(route).name()), (Mode::Embedded, "b:2".to_string()));
}

#[test]
fn connect_targets() {
    let parse = |s: &str| connect_target(&s.parse::<Uri>().unwrap());
    assert_eq!(parse("example.com:443"), Ok(("example.com".into(), 443)));
    assert_eq!(parse("[::1]:8443"), Ok(("[::1]".into(), 8443)));
    assert!(parse("example.com").is_err());
    assert!(parse("u@example.com:443").is_err());
}
