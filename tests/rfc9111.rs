//! RFC 9111 (HTTP Caching) through the real binary, with RFC 5861 (stale-while-revalidate,
//! stale-if-error), RFC 9211 (Cache-Status) and RFC 8246 (immutable) where they meet it.
//!
//! Most cases are rows of tables: each row owns one path on a shared origin and is a short
//! script of requests; every step states what the client must get and what must (not) have
//! reached the origin (request count for the path, and request fields where they matter). A
//! table runs all its rows against one proxy process and reports every failing row at once.
//! The policy's deliberate deviations (src/cache/policy/mod.rs) are what these tests expect.
//! Tests that first exposed proxy bugs keep their own functions, next to the rows they extend.

mod support;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use std::sync::Arc;
use support::client::Got;
use support::origin::RawOrigin;
use support::proxy::ProxyProcess;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// An HTTP-date `secs` seconds in the past (leaked: rows hold `&str` header pairs).
fn ago(secs: u64) -> &'static str {
    Box::leak(httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(secs)).into_boxed_str())
}

/// An HTTP-date `secs` seconds in the future.
fn ahead(secs: u64) -> &'static str {
    Box::leak(httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs)).into_boxed_str())
}

/// A plain GET through hyper's client; panics on transport errors.
async fn fetch(url: &str) -> Got {
    send("GET", url, &[]).await.unwrap()
}

fn fixed(status: u16, headers: &[(&str, &str)], body: &str) -> Behaviour {
    Behaviour::Fixed { status, headers: owned(headers), body: Bytes::copy_from_slice(body.as_bytes()) }
}

fn ok(headers: &[(&str, &str)], body: &str) -> Behaviour {
    fixed(200, headers, body)
}

/// Answers 304 (with only the ETag) to a matching If-None-Match, else `then`.
fn validating(etag: &str, then: Behaviour) -> Behaviour {
    Behaviour::Conditional { etag: etag.into(), then: Box::new(then) }
}

/// A proxy in front of a fresh origin.
struct Env {
    origin: Origin,
    proxy: ProxyProcess,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(stale_time: u64, flags: &[&str]) -> Env {
        let origin = Origin::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut builder = ProxyBuilder::new(stale_time, origin.port(), dir.path());
        for f in flags {
            builder = builder.arg(f);
        }
        let proxy = builder.start();
        Env { origin, proxy, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        self.proxy.url(self.origin.port(), path)
    }
}

/// Any method through hyper's client on a new connection, bounded; errors are reported, not
/// panicked on, so one broken row does not hide the others.
async fn send(method: &str, url: &str, headers: &[(String, String)]) -> Result<Got, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Empty::new()).map_err(|e| format!("bad request: {e}"))?;
    let fut = async move {
        let resp = client.request(req).await.map_err(|e| format!("request failed: {e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| format!("body failed: {e:?}"))?.to_bytes();
        Ok(Got { status: parts.status, headers: parts.headers, body })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

/// Sends a request as raw bytes (so hop-by-hop fields reach the proxy exactly as written) and
/// parses the answer. Adds `Connection: close` unless the caller sends its own Connection.
async fn send_raw(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
) -> Result<Got, String> {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        text.push_str("Connection: close\r\n");
    }
    if method != "GET" && method != "HEAD" {
        text.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let answer = tokio::time::timeout(Duration::from_secs(12), raw(port, text.as_bytes()))
        .await
        .map_err(|_| "no raw answer".to_string())?;
    parse_raw(&answer, method == "HEAD")
}

/// Parses an HTTP/1.1 response read to the end of the connection.
fn parse_raw(answer: &str, head_only: bool) -> Result<Got, String> {
    let (head, rest) =
        answer.split_once("\r\n\r\n").ok_or_else(|| format!("no response head: {answer:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
    let status =
        code.and_then(|c| StatusCode::from_u16(c).ok()).ok_or(format!("status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or(format!("header line {line:?}"))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| e.to_string())?;
        headers.append(name, HeaderValue::from_str(v.trim()).map_err(|e| e.to_string())?);
    }
    let chunked =
        headers.get("transfer-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if head_only {
        String::new()
    } else if chunked {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").ok_or("bad chunk")?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n).ok_or("short chunk")?);
            rest = after.get(n + 2..).ok_or("short chunk")?;
        }
        out
    } else {
        rest.to_string()
    };
    Ok(Got { status, headers, body: Bytes::from(body) })
}

/// The `ttl` parameter of a Cache-Status value.
fn cache_status_ttl(got: &Got) -> Option<i64> {
    let cs = got.header("cache-status")?;
    let at = cs.find("ttl=")?;
    cs[at + 4..].split(';').next()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Table rows: a path, how the origin answers it, and a script of steps.

type Check = Box<dyn Fn(&Got) -> Result<(), String> + Send + Sync>;

/// One request of a row and what must follow from it.
struct Step {
    method: &'static str,
    /// Appended to the row's path (empty: the row's path itself).
    sub: String,
    headers: Vec<(String, String)>,
    /// Origin routes set before the request: (sub-path, behaviour).
    routes: Vec<(String, Behaviour)>,
    /// Send as raw bytes instead of through hyper's client.
    raw: bool,
    /// Resend (bounded) until the client-side checks pass: for effects of background work.
    retry: bool,
    status: Option<u16>,
    body: Option<String>,
    x_cache: Option<&'static str>,
    checks: Vec<Check>,
    /// Requests the origin must have seen for this step's path, after the step.
    hits: Option<usize>,
    /// Wait (bounded) for the origin count to reach `hits` (background requests).
    wait_hits: bool,
    /// Fields of the last request that reached the origin for this path: Some = equals,
    /// None = absent.
    sent: Vec<(String, Option<String>)>,
}

fn req(method: &'static str) -> Step {
    Step {
        method,
        sub: String::new(),
        headers: Vec::new(),
        routes: Vec::new(),
        raw: false,
        retry: false,
        status: None,
        body: None,
        x_cache: None,
        checks: Vec::new(),
        hits: None,
        wait_hits: false,
        sent: Vec::new(),
    }
}

fn get() -> Step {
    req("GET")
}

fn head() -> Step {
    req("HEAD")
}

impl Step {
    fn h(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn at(mut self, sub: &str) -> Self {
        self.sub = sub.into();
        self
    }

    fn route(self, b: Behaviour) -> Self {
        self.route_at("", b)
    }

    fn route_at(mut self, sub: &str, b: Behaviour) -> Self {
        self.routes.push((sub.into(), b));
        self
    }

    fn raw(mut self) -> Self {
        self.raw = true;
        self
    }

    fn retry(mut self) -> Self {
        self.retry = true;
        self
    }

    fn status(mut self, s: u16) -> Self {
        self.status = Some(s);
        self
    }

    fn body(mut self, b: &str) -> Self {
        self.body = Some(b.into());
        self
    }

    /// 200 with this body.
    fn ok(self, b: &str) -> Self {
        self.status(200).body(b)
    }

    fn hit(mut self) -> Self {
        self.x_cache = Some("HIT");
        self
    }

    fn miss(mut self) -> Self {
        self.x_cache = Some("MISS");
        self
    }

    fn hits(mut self, n: usize) -> Self {
        self.hits = Some(n);
        self
    }

    fn eventually_hits(mut self, n: usize) -> Self {
        self.hits = Some(n);
        self.wait_hits = true;
        self
    }

    fn check(mut self, f: impl Fn(&Got) -> Result<(), String> + Send + Sync + 'static) -> Self {
        self.checks.push(Box::new(f));
        self
    }

    fn has(self, name: &str, value: &str) -> Self {
        let (n, v) = (name.to_string(), value.to_string());
        self.check(move |g| match g.header(&n) {
            Some(x) if x == v => Ok(()),
            other => Err(format!("{n} is {other:?}, want {v:?}")),
        })
    }

    fn present(self, name: &str) -> Self {
        let n = name.to_string();
        self.check(move |g| g.headers.get(&n).map(|_| ()).ok_or(format!("{n} missing")))
    }

    fn lacks(self, name: &str) -> Self {
        let n = name.to_string();
        self.check(move |g| match g.header(&n) {
            None => Ok(()),
            Some(v) => Err(format!("{n} present: {v:?}")),
        })
    }

    /// Cache-Status contains `part`.
    fn cs(self, part: &str) -> Self {
        let p = part.to_string();
        self.check(move |g| match g.header("cache-status") {
            Some(v) if v.contains(&p) => Ok(()),
            other => Err(format!("cache-status {other:?} lacks {p:?}")),
        })
    }

    /// Cache-Status does not contain `part`.
    fn cs_not(self, part: &str) -> Self {
        let p = part.to_string();
        self.check(move |g| match g.header("cache-status") {
            Some(v) if v.contains(&p) => Err(format!("cache-status {v:?} contains {p:?}")),
            _ => Ok(()),
        })
    }

    /// Cache-Status is exactly `value`.
    fn cs_is(self, value: &str) -> Self {
        self.has("cache-status", value)
    }

    /// Cache-Status ttl within [lo, hi]. A fresh miss's ttl is the lifetime less the age,
    /// and the age counts whole seconds from the origin's `Date`, so a response that crosses a
    /// second boundary on its way (a loaded machine) shows one second less.
    fn ttl_in(self, lo: i64, hi: i64) -> Self {
        self.check(move |g| match cache_status_ttl(g) {
            Some(t) if (lo..=hi).contains(&t) => Ok(()),
            other => {
                Err(format!("cache-status ttl {other:?} not in {lo}..={hi} ({:?})", g.header("cache-status")))
            }
        })
    }

    /// Age within [lo, hi].
    fn age_in(self, lo: u64, hi: u64) -> Self {
        self.check(move |g| match g.header("age").and_then(|a| a.parse::<u64>().ok()) {
            Some(a) if (lo..=hi).contains(&a) => Ok(()),
            other => Err(format!("age {other:?} not in {lo}..={hi}")),
        })
    }

    /// The origin's last request for this path carried `name: value`.
    fn sent(mut self, name: &str, value: &str) -> Self {
        self.sent.push((name.into(), Some(value.into())));
        self
    }

    /// The origin's last request for this path did not carry `name`.
    fn not_sent(mut self, name: &str) -> Self {
        self.sent.push((name.into(), None));
        self
    }

    fn client_errors(&self, g: &Got) -> Vec<String> {
        let mut errs = Vec::new();
        if let Some(s) = self.status {
            if g.status.as_u16() != s {
                errs.push(format!("status {} want {s}", g.status.as_u16()));
            }
        }
        if let Some(b) = &self.body {
            if g.body != b.as_bytes() {
                errs.push(format!("body {:?} want {b:?}", String::from_utf8_lossy(&g.body)));
            }
        }
        if let Some(x) = self.x_cache {
            if g.header("x-cache") != Some(x) {
                errs.push(format!("x-cache {:?} want {x}", g.header("x-cache")));
            }
        }
        errs.extend(self.checks.iter().filter_map(|c| c(g).err()));
        if !errs.is_empty() {
            errs.push(format!("[cache-status {:?}]", g.header("cache-status")));
        }
        errs
    }
}

struct Row {
    name: String,
    route: Behaviour,
    steps: Vec<Step>,
}

fn row(name: impl Into<String>, route: Behaviour, steps: Vec<Step>) -> Row {
    Row { name: name.into(), route, steps }
}

/// Runs every row (each on its own path `/<name>`); returns one line per failing row.
async fn run_rows(env: &Env, rows: Vec<Row>) -> Vec<String> {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for row in rows {
        assert!(names.insert(row.name.clone()), "duplicate row {}", row.name);
        let base = format!("/{}", row.name);
        env.origin.route(&base, row.route);
        for (i, step) in row.steps.iter().enumerate() {
            if let Err(e) = run_step(env, &base, step).await {
                failures.push(format!(
                    "{} step {} ({} {}{}): {e}",
                    row.name,
                    i + 1,
                    step.method,
                    base,
                    step.sub
                ));
                break;
            }
        }
    }
    failures
}

async fn run_step(env: &Env, base: &str, step: &Step) -> Result<(), String> {
    let want_hits = step.hits.ok_or("step states no origin expectation")?;
    let path = format!("{base}{}", step.sub);
    for (sub, b) in &step.routes {
        env.origin.route(&format!("{base}{sub}"), b.clone());
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = if step.raw {
            let target = format!("/127.0.0.1:{}{path}", env.origin.port());
            send_raw(env.proxy.port, step.method, &target, &step.headers).await
        } else {
            send(step.method, &env.url(&path), &step.headers).await
        };
        let errs = match &got {
            Ok(g) => step.client_errors(g),
            Err(e) => vec![e.clone()],
        };
        if errs.is_empty() {
            break;
        }
        if !step.retry || Instant::now() >= deadline {
            return Err(errs.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if step.wait_hits {
        eventually(Duration::from_secs(3), || env.origin.hits(&path) >= want_hits).await;
    }
    let hits = env.origin.hits(&path);
    if hits != want_hits {
        return Err(format!("origin saw {hits} request(s), want {want_hits}"));
    }
    if !step.sent.is_empty() {
        let last = env.origin.last_request(&path).ok_or("origin saw no request")?;
        for (name, want) in &step.sent {
            let got = last.get(name.as_str()).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            if got != *want {
                return Err(format!("origin got {name}: {got:?}, want {want:?}"));
            }
        }
    }
    Ok(())
}

fn assert_rows(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} row(s) failed:\n{}", failures.len(), failures.join("\n"));
}

async fn table(stale_time: u64, flags: &[&str], rows: impl FnOnce(u16) -> Vec<Row>) {
    let env = Env::start(stale_time, flags).await;
    let rows = rows(env.origin.port());
    assert_rows(run_rows(&env, rows).await);
}

const MAX_AGE_600: (&str, &str) = ("cache-control", "max-age=600");

/// The runner itself: every kind of expectation, when wrong, fails its row (so no row can
/// pass vacuously), and a failing row is reported under its name.
#[tokio::test(flavor = "multi_thread")]
async fn harness_reports_every_kind_of_mismatch() {
    let env = Env::start(60, &[]).await;
    let b = || ok(&[MAX_AGE_600, ("etag", "\"t\"")], "t");
    let wrong = vec![
        row("wrong_status", b(), vec![get().status(404).hits(1)]),
        row("wrong_body", b(), vec![get().body("x").hits(1)]),
        row("wrong_x_cache", b(), vec![get().hit().hits(1)]),
        row("wrong_hits", b(), vec![get().hits(2)]),
        row("wrong_no_origin_expectation", b(), vec![get()]),
        row("wrong_sent", b(), vec![get().h("x-a", "1").hits(1).sent("x-a", "2")]),
        row("wrong_not_sent", b(), vec![get().h("x-a", "1").hits(1).not_sent("x-a")]),
        row("wrong_has", b(), vec![get().hits(1).has("etag", "\"u\"")]),
        row("wrong_present", b(), vec![get().hits(1).present("x-none")]),
        row("wrong_lacks", b(), vec![get().hits(1).lacks("etag")]),
        row("wrong_cs", b(), vec![get().hits(1).cs("collapsed")]),
        row("wrong_cs_not", b(), vec![get().hits(1).cs_not("stored")]),
        row("wrong_cs_is", b(), vec![get().hits(1).cs_is("httpcache-proxy; hit")]),
        row("wrong_ttl", b(), vec![get().hits(1).ttl_in(0, 10)]),
        row("wrong_age", b(), vec![get().hits(1), get().hits(1).age_in(100, 200)]),
        row("wrong_raw", b(), vec![get().raw().body("x").hits(1)]),
        row("wrong_eventually_hits", b(), vec![get().eventually_hits(2)]),
        row("wrong_later_step", b(), vec![get().hits(1), get().miss().hits(1)]),
    ];
    let names: Vec<String> = wrong.iter().map(|r| r.name.clone()).collect();
    let failures = run_rows(&env, wrong).await;
    assert_eq!(failures.len(), names.len(), "{failures:#?}");
    for (name, line) in names.iter().zip(&failures) {
        assert!(line.starts_with(&format!("{name} step ")), "{line}");
    }
    assert!(failures.last().unwrap().contains("step 2"), "the failing step is named");
}

// ---------------------------------------------------------------------------------------------
// §3 Storing responses.

fn storing_rows(_port: u16) -> Vec<Row> {
    let lm = last_modified();
    let lm = lm.as_str();
    let mut rows = vec![
        row(
            "s3_get_200_with_last_modified_is_stored",
            ok(&[("last-modified", lm)], "a"),
            vec![
                get().ok("a").miss().hits(1).cs("fwd=uri-miss").cs("stored"),
                get().ok("a").hit().hits(1).present("age").cs("; hit"),
            ],
        ),
        row(
            "s3_post_response_is_not_stored",
            ok(&[MAX_AGE_600], "p"),
            vec![
                req("POST").ok("p").miss().hits(1).cs("fwd=bypass").cs_not("stored"),
                get().ok("p").miss().hits(2),
                get().ok("p").hit().hits(2),
            ],
        ),
        row(
            "s3_put_response_is_not_stored",
            ok(&[MAX_AGE_600], "u"),
            vec![
                req("PUT").ok("u").miss().hits(1),
                get().ok("u").miss().hits(2),
                get().ok("u").hit().hits(2),
            ],
        ),
        row(
            "s5_2_2_5_response_no_store_is_not_stored",
            ok(&[("cache-control", "max-age=600, no-store")], "n"),
            vec![get().ok("n").miss().hits(1).cs_not("stored"), get().ok("n").miss().hits(2)],
        ),
        row(
            "s5_2_2_5_response_no_store_in_second_field_line",
            ok(&[MAX_AGE_600, ("cache-control", "no-store")], "n"),
            vec![get().ok("n").miss().hits(1), get().ok("n").miss().hits(2)],
        ),
        row(
            "s5_2_2_5_response_no_store_uppercase",
            ok(&[("cache-control", "MAX-AGE=600, NO-STORE")], "n"),
            vec![get().ok("n").miss().hits(1), get().ok("n").miss().hits(2)],
        ),
        row(
            "s5_2_1_5_request_no_store_response_not_stored",
            ok(&[MAX_AGE_600], "r"),
            vec![
                get()
                    .h("cache-control", "no-store")
                    .ok("r")
                    .miss()
                    .hits(1)
                    .cs("fwd=request")
                    .cs_not("stored"),
                get().ok("r").miss().hits(2).cs("stored"),
                get().ok("r").hit().hits(2),
            ],
        ),
        row(
            "s5_2_1_5_request_no_store_goes_to_origin_and_keeps_entry",
            ok(&[MAX_AGE_600], "v1"),
            vec![
                get().ok("v1").miss().hits(1),
                get()
                    .route(ok(&[MAX_AGE_600], "v2"))
                    .h("cache-control", "no-store")
                    .ok("v2")
                    .miss()
                    .hits(2)
                    .cs("fwd=request"),
                get().ok("v1").hit().hits(2),
            ],
        ),
        row(
            "s5_2_2_7_private_is_not_stored",
            ok(&[("cache-control", "private, max-age=600")], "pv"),
            vec![get().ok("pv").miss().hits(1).cs_not("stored"), get().ok("pv").miss().hits(2)],
        ),
        row(
            "s5_2_2_7_qualified_private_is_not_stored",
            ok(&[("cache-control", "private=\"set-cookie\", max-age=600")], "pq"),
            vec![get().ok("pq").miss().hits(1), get().ok("pq").miss().hits(2)],
        ),
        row(
            "s3_5_authorization_without_permission_is_not_stored",
            ok(&[MAX_AGE_600], "auth"),
            vec![
                get()
                    .h("authorization", "Bearer t")
                    .ok("auth")
                    .miss()
                    .hits(1)
                    .sent("authorization", "Bearer t"),
                get().h("authorization", "Bearer t").ok("auth").miss().hits(2),
                get().ok("auth").miss().hits(3).not_sent("authorization"),
            ],
        ),
        row(
            "s3_5_authorization_with_public_is_stored",
            ok(&[("cache-control", "public"), ("last-modified", lm)], "pub"),
            vec![
                get().h("authorization", "Bearer t").ok("pub").miss().hits(1).cs("stored"),
                get().ok("pub").hit().hits(1),
                get().h("authorization", "Bearer t").ok("pub").hit().hits(1),
            ],
        ),
        row(
            "s3_5_authorization_with_s_maxage_is_stored",
            ok(&[("cache-control", "s-maxage=600")], "sm"),
            vec![get().h("authorization", "Bearer t").ok("sm").miss().hits(1), get().ok("sm").hit().hits(1)],
        ),
        row(
            "s3_5_authorization_with_must_revalidate_is_stored",
            ok(&[("cache-control", "max-age=600, must-revalidate")], "mr"),
            vec![get().h("authorization", "Bearer t").ok("mr").miss().hits(1), get().ok("mr").hit().hits(1)],
        ),
        row(
            "s3_status_302_with_last_modified_is_not_stored",
            fixed(302, &[("last-modified", lm), ("location", "/elsewhere")], "r"),
            vec![get().status(302).body("r").miss().hits(1), get().status(302).body("r").miss().hits(2)],
        ),
        row(
            "s3_status_302_with_max_age_is_stored",
            fixed(302, &[MAX_AGE_600, ("location", "/elsewhere")], "r"),
            vec![
                get().status(302).body("r").miss().hits(1),
                get().status(302).body("r").hit().hits(1).has("location", "/elsewhere"),
            ],
        ),
        row(
            "s3_status_307_with_public_and_last_modified_is_stored",
            fixed(307, &[("cache-control", "public"), ("last-modified", lm), ("location", "/x")], "t"),
            vec![get().status(307).body("t").miss().hits(1), get().status(307).body("t").hit().hits(1)],
        ),
        row(
            "s3_status_201_with_max_age_is_stored",
            fixed(201, &[MAX_AGE_600], "c"),
            vec![get().status(201).body("c").miss().hits(1), get().status(201).body("c").hit().hits(1)],
        ),
        row(
            "s3_status_403_with_max_age_is_stored",
            fixed(403, &[MAX_AGE_600], "f"),
            vec![get().status(403).body("f").miss().hits(1), get().status(403).body("f").hit().hits(1)],
        ),
        row(
            "s3_status_500_with_expires_is_stored",
            fixed(500, &[("expires", ahead(600))], "e"),
            vec![get().status(500).body("e").miss().hits(1), get().status(500).body("e").hit().hits(1)],
        ),
        row(
            "s3_status_503_with_s_maxage_is_stored",
            fixed(503, &[("cache-control", "s-maxage=600")], "u"),
            vec![get().status(503).body("u").miss().hits(1), get().status(503).body("u").hit().hits(1)],
        ),
        row(
            "s3_3_status_206_is_never_stored",
            fixed(206, &[MAX_AGE_600, ("content-range", "bytes 0-1/10")], "ab"),
            vec![get().status(206).body("ab").miss().hits(1), get().status(206).body("ab").miss().hits(2)],
        ),
        row(
            "s3_3_response_cut_short_is_not_stored",
            Behaviour::AbortAfter { len: 1000, sent: 500, headers: owned(&[("last-modified", lm)]) },
            vec![get().status(502).hits(1), get().status(502).hits(2)],
        ),
        row(
            "s3_3_incomplete_response_with_max_age_is_not_stored",
            Behaviour::AbortAfter { len: 800, sent: 400, headers: owned(&[MAX_AGE_600]) },
            vec![get().status(502).hits(1), get().status(502).hits(2)],
        ),
    ];
    // RFC 9110 §15.1: heuristically cacheable status codes, stored with Last-Modified alone.
    for status in [200u16, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        let body = if status == 204 { "" } else { "d" };
        let second = get().status(status).body(body).hits(1);
        // A 204 has no Content-Length, so it streams into the cache; a second request may join
        // that fill (collapsed) instead of finding the finished entry: both come from the cache.
        let second = if status == 204 { second } else { second.hit().present("age") };
        rows.push(row(
            format!("s3_status_{status}_with_last_modified_is_stored"),
            fixed(status, &[("last-modified", lm), ("location", "/moved")], body),
            vec![get().status(status).body(body).miss().hits(1), second],
        ));
    }
    // Not cacheable by default: Last-Modified alone does not make them storable.
    for status in [201u16, 202, 403, 500, 502, 503, 504] {
        rows.push(row(
            format!("s3_status_{status}_with_last_modified_is_not_stored"),
            fixed(status, &[("last-modified", lm)], "origin says no"),
            vec![
                get().status(status).body("origin says no").miss().hits(1).cs_not("stored"),
                get().status(status).body("origin says no").miss().hits(2),
            ],
        ));
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_storing_table() {
    table(60, &[], storing_rows).await;
}

// ---------------------------------------------------------------------------------------------
// §4.2.1 / §4.2.2 Freshness.

fn freshness_rows(_port: u16) -> Vec<Row> {
    let lm = last_modified();
    let lm = lm.as_str();
    let two_misses = |b: &str| vec![get().ok(b).miss().hits(1), get().ok(b).miss().hits(2)];
    let miss_hit = |b: &str| vec![get().ok(b).miss().hits(1), get().ok(b).hit().hits(1)];
    vec![
        row(
            "s4_2_1_max_age_is_fresh",
            ok(&[MAX_AGE_600], "m"),
            vec![
                get().ok("m").miss().hits(1).ttl_in(599, 600),
                get().ok("m").hit().hits(1).ttl_in(595, 600).age_in(0, 3),
            ],
        ),
        row(
            "s4_2_1_s_maxage_beats_max_age",
            ok(&[("cache-control", "max-age=600, s-maxage=0")], "s"),
            two_misses("s"),
        ),
        row(
            "s4_2_1_s_maxage_beats_max_age_zero",
            ok(&[("cache-control", "max-age=0, s-maxage=600")], "s"),
            vec![get().ok("s").miss().hits(1), get().ok("s").hit().hits(1).ttl_in(595, 600)],
        ),
        row(
            "s4_2_1_max_age_beats_expires_in_the_past",
            ok(&[MAX_AGE_600, ("expires", ago(3600))], "x"),
            miss_hit("x"),
        ),
        row(
            "s4_2_1_max_age_zero_beats_expires_in_the_future",
            ok(&[("cache-control", "max-age=0"), ("expires", ahead(3600))], "x"),
            two_misses("x"),
        ),
        row(
            "s4_2_1_s_maxage_beats_expires_in_the_past",
            ok(&[("cache-control", "s-maxage=600"), ("expires", ago(3600))], "x"),
            miss_hit("x"),
        ),
        row(
            "s4_2_1_expires_in_the_future_is_fresh",
            ok(&[("expires", ahead(600))], "e"),
            vec![get().ok("e").miss().hits(1), get().ok("e").hit().hits(1).ttl_in(590, 600)],
        ),
        row("s4_2_1_expires_in_the_past_is_stale", ok(&[("expires", ago(60))], "e"), two_misses("e")),
        row(
            "s4_2_1_expires_in_the_past_beats_heuristic",
            ok(&[("expires", ago(60)), ("last-modified", lm)], "e"),
            vec![get().ok("e").miss().hits(1), get().ok("e").miss().hits(2).sent("if-modified-since", lm)],
        ),
        row(
            "s5_3_expires_zero_is_stale",
            ok(&[("expires", "0"), ("last-modified", lm)], "z"),
            two_misses("z"),
        ),
        row(
            "s5_3_expires_invalid_date_is_stale",
            ok(&[("expires", "next week"), ("last-modified", lm)], "z"),
            two_misses("z"),
        ),
        row(
            "s4_2_1_conflicting_expires_lines_are_stale",
            ok(&[("expires", ahead(600)), ("expires", ahead(1200))], "c"),
            two_misses("c"),
        ),
        row(
            "s4_2_1_expires_minus_date_with_date_in_the_past",
            ok(&[("date", ago(300)), ("expires", ahead(300))], "d"),
            vec![get().ok("d").miss().hits(1), get().ok("d").hit().hits(1).age_in(300, 315).ttl_in(284, 300)],
        ),
        row(
            "s4_2_1_expires_lifetime_is_reduced_by_age_header",
            ok(&[("age", "500"), ("expires", ahead(300))], "a"),
            two_misses("a"),
        ),
        row("s4_2_1_max_age_zero_is_not_reused", ok(&[("cache-control", "max-age=0")], "z"), two_misses("z")),
        row(
            "s4_2_1_duplicate_max_age_takes_the_smallest",
            ok(&[("cache-control", "max-age=600, max-age=0")], "d"),
            two_misses("d"),
        ),
        row(
            "s4_2_1_duplicate_max_age_smallest_first",
            ok(&[("cache-control", "max-age=0, max-age=600")], "d"),
            two_misses("d"),
        ),
        row(
            "s4_2_1_duplicate_max_age_across_field_lines",
            ok(&[MAX_AGE_600, ("cache-control", "max-age=0")], "d"),
            two_misses("d"),
        ),
        row(
            "s4_2_1_duplicate_s_maxage_takes_the_smallest",
            ok(&[("cache-control", "s-maxage=600, s-maxage=0")], "d"),
            two_misses("d"),
        ),
        row(
            "s4_2_1_duplicate_max_age_both_large_is_fresh",
            ok(&[("cache-control", "max-age=900, max-age=600")], "d"),
            vec![get().ok("d").miss().hits(1).ttl_in(599, 600), get().ok("d").hit().hits(1)],
        ),
        row(
            "s5_2_quoted_max_age_is_accepted",
            ok(&[("cache-control", "max-age=\"600\"")], "q"),
            miss_hit("q"),
        ),
        row("s5_2_uppercase_directive_names", ok(&[("cache-control", "MAX-AGE=600")], "u"), miss_hit("u")),
        row(
            "s5_2_mixed_case_directive_names",
            ok(&[("cache-control", "Max-Age=600, Public")], "u"),
            miss_hit("u"),
        ),
        row(
            "s4_2_1_invalid_max_age_is_stale_even_with_last_modified",
            ok(&[("cache-control", "max-age=soon"), ("last-modified", lm)], "i"),
            vec![get().ok("i").miss().hits(1), get().ok("i").miss().hits(2).sent("if-modified-since", lm)],
        ),
        row("s4_2_1_negative_max_age_is_stale", ok(&[("cache-control", "max-age=-1")], "n"), two_misses("n")),
        row(
            "s1_2_2_max_age_overflow_saturates",
            ok(&[("cache-control", "max-age=99999999999999999999")], "o"),
            miss_hit("o"),
        ),
        row(
            "s5_2_3_unknown_directives_are_ignored",
            ok(&[("cache-control", "max-age=600, foo, bar=\"x, max-age=0\"")], "u"),
            miss_hit("u"),
        ),
        row(
            "s4_2_2_heuristic_freshness_with_last_modified",
            ok(&[("last-modified", lm)], "h"),
            vec![get().ok("h").miss().hits(1).ttl_in(59, 60), get().ok("h").hit().hits(1).ttl_in(55, 60)],
        ),
        row("s4_2_2_no_heuristic_without_last_modified", ok(&[], "n"), two_misses("n")),
        row(
            "s4_2_2_no_heuristic_with_invalid_last_modified",
            ok(&[("last-modified", "yesterday")], "n"),
            vec![get().ok("n").miss().hits(1), get().ok("n").miss().hits(2).not_sent("if-modified-since")],
        ),
        row(
            "s5_4_pragma_in_a_response_is_ignored",
            ok(&[MAX_AGE_600, ("pragma", "no-cache")], "p"),
            miss_hit("p"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_2_freshness_table() {
    table(60, &[], freshness_rows).await;
}

/// `--force-ttl` (deviation 4): every 2xx fresh for stale_time; no-store, private, the
/// Authorization rule and non-2xx statuses keep their RFC treatment.
fn force_ttl_rows(_port: u16) -> Vec<Row> {
    let two_misses = |s: u16| vec![get().status(s).miss().hits(1), get().status(s).miss().hits(2)];
    vec![
        row(
            "force_ttl_overrides_max_age_zero",
            ok(&[("cache-control", "max-age=0")], "f"),
            vec![get().ok("f").miss().hits(1).ttl_in(59, 60), get().ok("f").hit().hits(1).ttl_in(55, 60)],
        ),
        row(
            "force_ttl_overrides_a_longer_max_age",
            ok(&[("cache-control", "max-age=100000")], "f"),
            vec![get().ok("f").miss().hits(1).ttl_in(59, 60), get().ok("f").hit().hits(1).ttl_in(55, 60)],
        ),
        row(
            "force_ttl_stores_without_validator_or_freshness",
            ok(&[], "f"),
            vec![get().ok("f").miss().hits(1), get().ok("f").hit().hits(1)],
        ),
        row(
            "force_ttl_overrides_expires_in_the_past",
            ok(&[("expires", ago(60))], "f"),
            vec![get().ok("f").miss().hits(1), get().ok("f").hit().hits(1)],
        ),
        row(
            "force_ttl_stores_any_2xx",
            fixed(202, &[], "accepted"),
            vec![get().status(202).miss().hits(1), get().status(202).body("accepted").hit().hits(1)],
        ),
        row("force_ttl_honours_no_store", ok(&[("cache-control", "no-store")], ""), two_misses(200)),
        row("force_ttl_honours_private", ok(&[("cache-control", "private")], ""), two_misses(200)),
        row(
            "force_ttl_honours_authorization",
            ok(&[], "a"),
            vec![
                get().h("authorization", "Bearer t").ok("a").miss().hits(1),
                get().h("authorization", "Bearer t").ok("a").miss().hits(2),
            ],
        ),
        row(
            "force_ttl_leaves_404_to_the_rfc",
            fixed(404, &[("cache-control", "max-age=0")], ""),
            two_misses(404),
        ),
        row("force_ttl_does_not_store_503", fixed(503, &[], ""), two_misses(503)),
        row(
            "force_ttl_still_revalidates_no_cache",
            ok(&[("cache-control", "no-cache")], "nc"),
            vec![get().ok("nc").miss().hits(1), get().ok("nc").miss().hits(2)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_2_1_force_ttl_table() {
    table(60, &["--force-ttl"], force_ttl_rows).await;
}

// ---------------------------------------------------------------------------------------------
// §4.2.3 Age.

fn age_rows(_port: u16) -> Vec<Row> {
    vec![
        row(
            "s4_2_3_age_header_beyond_max_age_is_already_stale",
            ok(&[("age", "100"), ("cache-control", "max-age=50")], "a"),
            vec![get().ok("a").miss().hits(1).has("age", "100"), get().ok("a").miss().hits(2)],
        ),
        row(
            "s4_2_3_age_header_counts_toward_current_age",
            ok(&[("age", "100"), MAX_AGE_600], "a"),
            vec![
                get().ok("a").miss().hits(1).has("age", "100"),
                get().ok("a").hit().hits(1).age_in(100, 115).ttl_in(485, 500),
            ],
        ),
        row(
            "s4_2_3_apparent_age_from_date_in_the_past",
            ok(&[("date", ago(300)), MAX_AGE_600], "d"),
            vec![get().ok("d").miss().hits(1), get().ok("d").hit().hits(1).age_in(300, 315).ttl_in(284, 300)],
        ),
        row(
            "s4_2_3_date_older_than_max_age_is_stale",
            ok(&[("date", ago(700)), MAX_AGE_600], "d"),
            vec![get().ok("d").miss().hits(1), get().ok("d").miss().hits(2)],
        ),
        row(
            "s4_2_3_date_in_the_future_is_clamped_to_zero",
            ok(&[("date", ahead(1000)), MAX_AGE_600], "f"),
            vec![get().ok("f").miss().hits(1), get().ok("f").hit().hits(1).age_in(0, 2).ttl_in(597, 600)],
        ),
        row(
            "s5_1_invalid_age_header_is_ignored",
            ok(&[("age", "soon"), MAX_AGE_600], "i"),
            vec![get().ok("i").miss().hits(1), get().ok("i").hit().hits(1).age_in(0, 2)],
        ),
        row(
            "s4_2_3_apparent_age_wins_over_smaller_age_header",
            ok(&[("date", ago(300)), ("age", "10"), MAX_AGE_600], "w"),
            vec![get().ok("w").miss().hits(1), get().ok("w").hit().hits(1).age_in(300, 315)],
        ),
        row(
            "s4_2_3_age_header_wins_over_smaller_apparent_age",
            ok(&[("date", ago(10)), ("age", "300"), MAX_AGE_600], "w"),
            vec![get().ok("w").miss().hits(1), get().ok("w").hit().hits(1).age_in(300, 315)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_2_3_age_table() {
    table(60, &[], age_rows).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_2_3_age_of_a_stored_response_grows_with_resident_time() {
    let env = Env::start(60, &[]).await;
    env.origin.ok("/grow", &[("date", ago(50)), MAX_AGE_600], "g");
    let url = env.url("/grow");
    assert_eq!(fetch(&url).await.header("x-cache"), Some("MISS"));
    let first = fetch(&url).await;
    let a1: u64 = first.header("age").unwrap().parse().unwrap();
    assert!((50..=60).contains(&a1), "apparent age from Date: {a1}");
    // Age is in whole seconds: wait for a second of real time to pass.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = fetch(&url).await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.body, "g");
    let a2: u64 = second.header("age").unwrap().parse().unwrap();
    assert!(a2 > a1 && a2 <= a1 + 3, "age grows with resident time: {a1} then {a2}");
    assert_eq!(env.origin.hits("/grow"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_2_2_heuristic_lifetime_expires_then_revalidates_with_if_modified_since() {
    let env = Env::start(1, &[]).await;
    let lm = last_modified();
    // A Date in the future makes the apparent age zero, so only resident time counts.
    env.origin.ok("/h", &[("last-modified", &lm), ("date", ahead(5))], "v1");
    let url = env.url("/h");
    assert_eq!(fetch(&url).await.header("x-cache"), Some("MISS"));
    let hit = fetch(&url).await;
    assert_eq!((hit.header("x-cache"), env.origin.hits("/h")), (Some("HIT"), 1));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    env.origin.route("/h", fixed(304, &[("date", ahead(5))], ""));
    let revalidated = fetch(&url).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.body, "v1");
    assert_eq!(revalidated.header("x-cache"), Some("HIT"));
    assert!(revalidated.header("cache-status").unwrap().contains("fwd=stale; fwd-status=304"));
    assert_eq!(env.origin.hits("/h"), 2);
    let sent = env.origin.last_request("/h").unwrap();
    assert_eq!(sent.get("if-modified-since").unwrap(), lm.as_str());
    // The 304 freshened the entry for another heuristic lifetime.
    let again = fetch(&url).await;
    assert_eq!((again.header("x-cache"), again.body.as_ref()), (Some("HIT"), &b"v1"[..]));
    assert_eq!(env.origin.hits("/h"), 2);
}

// ---------------------------------------------------------------------------------------------
// §5.2.1 Request directives (and §5.4 Pragma).

fn request_directive_rows(_port: u16) -> Vec<Row> {
    let lm = last_modified();
    let lm = lm.as_str();
    let tagged = |tag: &str, body: &str| validating(tag, ok(&[MAX_AGE_600, ("etag", tag)], body));
    let stale = || ok(&[("date", ago(700)), MAX_AGE_600], "st");
    vec![
        row(
            "s5_2_1_4_no_cache_revalidates_a_fresh_entry",
            tagged("\"r1\"", "nc"),
            vec![
                get().ok("nc").miss().hits(1),
                get()
                    .h("cache-control", "no-cache")
                    .ok("nc")
                    .hit()
                    .hits(2)
                    .sent("if-none-match", "\"r1\"")
                    .cs("fwd=request; fwd-status=304"),
                get().ok("nc").hit().hits(2).cs("; hit"),
            ],
        ),
        row(
            "s5_2_1_4_no_cache_without_validator_refetches_and_stores",
            ok(&[MAX_AGE_600], "v1"),
            vec![
                get().ok("v1").miss().hits(1),
                get()
                    .route(ok(&[MAX_AGE_600], "v2"))
                    .h("cache-control", "no-cache")
                    .ok("v2")
                    .miss()
                    .hits(2)
                    .not_sent("if-none-match")
                    .not_sent("if-modified-since"),
                get().ok("v2").hit().hits(2),
            ],
        ),
        row(
            "s5_2_1_4_no_cache_with_last_modified_sends_if_modified_since",
            ok(&[MAX_AGE_600, ("last-modified", lm)], "lm"),
            vec![
                get().ok("lm").miss().hits(1),
                get().h("cache-control", "no-cache").ok("lm").miss().hits(2).sent("if-modified-since", lm),
            ],
        ),
        row(
            "s5_2_1_4_no_cache_is_case_insensitive",
            tagged("\"r2\"", "ci"),
            vec![
                get().ok("ci").miss().hits(1),
                get().h("cache-control", "NO-CACHE").ok("ci").hit().hits(2).sent("if-none-match", "\"r2\""),
            ],
        ),
        row(
            "s5_4_pragma_no_cache_without_cache_control_revalidates",
            tagged("\"p1\"", "pr"),
            vec![
                get().ok("pr").miss().hits(1),
                get().h("pragma", "no-cache").ok("pr").hit().hits(2).sent("if-none-match", "\"p1\""),
            ],
        ),
        row(
            "s5_4_pragma_is_ignored_when_cache_control_is_present",
            tagged("\"p2\"", "pr"),
            vec![
                get().ok("pr").miss().hits(1),
                get().h("pragma", "no-cache").h("cache-control", "max-age=3600").ok("pr").hit().hits(1),
            ],
        ),
        row(
            "s5_2_1_1_max_age_zero_revalidates",
            tagged("\"m0\"", "m0"),
            vec![
                get().ok("m0").miss().hits(1),
                get().h("cache-control", "max-age=0").ok("m0").hit().hits(2).sent("if-none-match", "\"m0\""),
            ],
        ),
        row(
            "s5_2_1_1_max_age_above_current_age_uses_the_cache",
            ok(&[MAX_AGE_600], "ma"),
            vec![
                get().ok("ma").miss().hits(1),
                get().h("cache-control", "max-age=3600").ok("ma").hit().hits(1),
            ],
        ),
        row(
            "s5_2_1_1_max_age_below_current_age_goes_to_origin",
            ok(&[("date", ago(300)), MAX_AGE_600], "ma"),
            vec![
                get().ok("ma").miss().hits(1),
                get().h("cache-control", "max-age=100").ok("ma").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_without_value_serves_stale",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale").ok("st").hit().hits(1).cs("; hit").ttl_in(-120, -99),
                get().ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_within_bound_serves_stale",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale=300").ok("st").hit().hits(1),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_beyond_bound_goes_to_origin",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale=50").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_invalid_value_is_ignored",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale=abc").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_refused_by_must_revalidate",
            ok(&[("date", ago(700)), ("cache-control", "max-age=600, must-revalidate")], "st"),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_refused_by_proxy_revalidate",
            ok(&[("date", ago(700)), ("cache-control", "max-age=600, proxy-revalidate")], "st"),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_refused_by_s_maxage",
            ok(&[("date", ago(700)), ("cache-control", "s-maxage=600")], "st"),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_2_max_stale_refused_by_response_no_cache",
            ok(&[("date", ago(700)), ("cache-control", "max-age=600, no-cache")], "st"),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "max-stale").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_3_min_fresh_satisfied_uses_the_cache",
            ok(&[MAX_AGE_600], "mf"),
            vec![
                get().ok("mf").miss().hits(1),
                get().h("cache-control", "min-fresh=100").ok("mf").hit().hits(1),
            ],
        ),
        row(
            "s5_2_1_3_min_fresh_unsatisfied_goes_to_origin",
            ok(&[("date", ago(300)), MAX_AGE_600], "mf"),
            vec![
                get().ok("mf").miss().hits(1),
                get().h("cache-control", "min-fresh=400").ok("mf").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_3_min_fresh_beats_max_stale",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "min-fresh=0, max-stale").ok("st").miss().hits(2),
            ],
        ),
        row(
            "s5_2_1_7_only_if_cached_miss_is_504",
            ok(&[MAX_AGE_600], "oc"),
            vec![
                get().h("cache-control", "only-if-cached").status(504).hits(0),
                get().ok("oc").miss().hits(1),
                get().h("cache-control", "only-if-cached").ok("oc").hit().hits(1),
            ],
        ),
        row(
            "s5_2_1_7_only_if_cached_stale_entry_is_504",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "only-if-cached").status(504).hits(1),
            ],
        ),
        row(
            "s5_2_1_7_only_if_cached_with_max_stale_serves_stale",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get().h("cache-control", "only-if-cached, max-stale").ok("st").hit().hits(1),
            ],
        ),
        row(
            "s5_2_1_7_only_if_cached_and_max_stale_in_separate_field_lines",
            stale(),
            vec![
                get().ok("st").miss().hits(1),
                get()
                    .h("cache-control", "only-if-cached")
                    .h("cache-control", "max-stale")
                    .ok("st")
                    .hit()
                    .hits(1),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_2_1_request_directives_table() {
    table(60, &[], request_directive_rows).await;
}

// ---------------------------------------------------------------------------------------------
// §5.2.2 Response directives (and RFC 8246 immutable).

fn response_directive_rows(_port: u16) -> Vec<Row> {
    let lm = last_modified();
    let lm = lm.as_str();
    let down = || fixed(503, &[], "down");
    vec![
        row(
            "s5_2_2_4_no_cache_is_stored_and_revalidated_on_every_use",
            validating("\"n1\"", ok(&[("cache-control", "max-age=600, no-cache"), ("etag", "\"n1\"")], "nc")),
            vec![
                get().ok("nc").miss().hits(1).cs("stored"),
                get().ok("nc").hit().hits(2).sent("if-none-match", "\"n1\"").cs("fwd=stale; fwd-status=304"),
                get().ok("nc").hit().hits(3).sent("if-none-match", "\"n1\""),
            ],
        ),
        row(
            "s5_2_2_4_no_cache_without_validator_is_always_fetched",
            ok(&[("cache-control", "max-age=600, no-cache")], "nv"),
            vec![get().ok("nv").miss().hits(1), get().ok("nv").miss().hits(2), get().ok("nv").miss().hits(3)],
        ),
        row(
            "s5_2_2_4_qualified_no_cache_is_treated_as_unqualified",
            validating(
                "\"q1\"",
                ok(&[("cache-control", "no-cache=\"set-cookie\", max-age=600"), ("etag", "\"q1\"")], "q"),
            ),
            vec![get().ok("q").miss().hits(1), get().ok("q").hit().hits(2).sent("if-none-match", "\"q1\"")],
        ),
        row(
            "s5_2_2_4_no_cache_with_last_modified_sends_if_modified_since",
            ok(&[("cache-control", "no-cache"), ("last-modified", lm)], "nl"),
            vec![get().ok("nl").miss().hits(1), get().ok("nl").miss().hits(2).sent("if-modified-since", lm)],
        ),
        row(
            "s5_2_2_2_must_revalidate_fresh_is_served",
            ok(&[("cache-control", "max-age=600, must-revalidate")], "mr"),
            vec![get().ok("mr").miss().hits(1), get().ok("mr").hit().hits(1)],
        ),
        row(
            "s5_2_2_2_must_revalidate_stale_is_revalidated",
            validating(
                "\"mr\"",
                ok(
                    &[
                        ("date", ago(700)),
                        ("cache-control", "max-age=600, must-revalidate"),
                        ("etag", "\"mr\""),
                    ],
                    "mr",
                ),
            ),
            vec![get().ok("mr").miss().hits(1), get().ok("mr").hit().hits(2).sent("if-none-match", "\"mr\"")],
        ),
        row(
            "s5_2_2_2_must_revalidate_stale_with_origin_error_is_not_served_stale",
            ok(
                &[("date", ago(700)), ("cache-control", "max-age=600, must-revalidate, stale-if-error=3600")],
                "old",
            ),
            vec![get().ok("old").miss().hits(1), get().route(down()).status(503).body("down").miss().hits(2)],
        ),
        row(
            "s5_2_2_8_proxy_revalidate_stale_with_origin_error_is_not_served_stale",
            ok(
                &[
                    ("date", ago(700)),
                    ("cache-control", "max-age=600, proxy-revalidate, stale-if-error=3600"),
                ],
                "old",
            ),
            vec![get().ok("old").miss().hits(1), get().route(down()).status(503).body("down").miss().hits(2)],
        ),
        row(
            "s5_2_2_10_s_maxage_stale_with_origin_error_is_not_served_stale",
            ok(&[("date", ago(700)), ("cache-control", "s-maxage=600, stale-if-error=3600")], "old"),
            vec![get().ok("old").miss().hits(1), get().route(down()).status(503).body("down").miss().hits(2)],
        ),
        row(
            "s5_2_2_9_public_with_last_modified_is_cached",
            ok(&[("cache-control", "public"), ("last-modified", lm)], "pb"),
            vec![get().ok("pb").miss().hits(1), get().ok("pb").hit().hits(1)],
        ),
        row(
            // Deviation 3: heuristic freshness needs Last-Modified, even with public.
            "s5_2_2_9_public_without_freshness_or_last_modified_is_not_reused",
            ok(&[("cache-control", "public")], "pb"),
            vec![get().ok("pb").miss().hits(1).cs("stored"), get().ok("pb").miss().hits(2)],
        ),
        row(
            "s5_2_2_3_must_understand_with_no_store_is_not_stored",
            ok(&[("cache-control", "must-understand, no-store, max-age=600")], "mu"),
            vec![get().ok("mu").miss().hits(1), get().ok("mu").miss().hits(2)],
        ),
        row(
            "s5_2_2_6_no_transform_is_cached_unchanged",
            ok(&[("cache-control", "max-age=600, no-transform"), ("content-type", "text/plain")], "nt"),
            vec![
                get().ok("nt").miss().hits(1),
                get().ok("nt").hit().hits(1).has("content-type", "text/plain"),
            ],
        ),
        row(
            "rfc8246_immutable_fresh_is_served",
            ok(&[("cache-control", "max-age=600, immutable")], "im"),
            vec![get().ok("im").miss().hits(1), get().ok("im").hit().hits(1)],
        ),
        row(
            "rfc8246_immutable_does_not_extend_freshness",
            ok(&[("date", ago(700)), ("cache-control", "max-age=600, immutable")], "im"),
            vec![get().ok("im").miss().hits(1), get().ok("im").miss().hits(2)],
        ),
        row(
            "rfc8246_immutable_does_not_stop_request_no_cache",
            validating(
                "\"im\"",
                ok(&[("cache-control", "max-age=600, immutable"), ("etag", "\"im\"")], "im"),
            ),
            vec![
                get().ok("im").miss().hits(1),
                get().h("cache-control", "no-cache").ok("im").hit().hits(2).sent("if-none-match", "\"im\""),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_2_2_response_directives_table() {
    table(60, &[], response_directive_rows).await;
}

// ---------------------------------------------------------------------------------------------
// §4.3 Validation: conditional requests to the origin, 304 handling, client conditionals.

fn validation_rows(_port: u16) -> Vec<Row> {
    let lm = last_modified();
    let lm = lm.as_str();
    let fresh_tagged = |tag: &str| ok(&[MAX_AGE_600, ("etag", tag), ("last-modified", lm)], "tagged");
    vec![
        row(
            "s4_3_4_304_freshens_and_updates_the_stored_headers",
            ok(
                &[
                    ("cache-control", "max-age=0"),
                    ("etag", "\"e1\""),
                    ("content-type", "text/plain"),
                    ("x-version", "1"),
                ],
                "stored body",
            ),
            vec![
                get().ok("stored body").miss().hits(1).has("x-version", "1"),
                get()
                    .route(fixed(304, &[("etag", "\"e1\""), ("x-version", "2"), MAX_AGE_600], ""))
                    .ok("stored body")
                    .hit()
                    .hits(2)
                    .sent("if-none-match", "\"e1\"")
                    .has("x-version", "2")
                    .has("content-type", "text/plain")
                    .has("content-length", "11")
                    .cs("fwd=stale; fwd-status=304"),
                get().ok("stored body").hit().hits(2).has("x-version", "2").cs("; hit").ttl_in(595, 600),
            ],
        ),
        row(
            "s4_3_1_last_modified_sends_if_modified_since_and_200_replaces",
            ok(&[("cache-control", "max-age=0"), ("last-modified", lm)], "old"),
            vec![
                get().ok("old").miss().hits(1),
                get()
                    .route(ok(&[MAX_AGE_600], "new"))
                    .ok("new")
                    .miss()
                    .hits(2)
                    .sent("if-modified-since", lm)
                    .not_sent("if-none-match"),
                get().ok("new").hit().hits(2),
            ],
        ),
        row(
            "s4_3_1_both_validators_are_sent",
            ok(&[("cache-control", "max-age=0"), ("etag", "\"b\""), ("last-modified", lm)], "both"),
            vec![
                get().ok("both").miss().hits(1),
                get()
                    .route(fixed(304, &[("etag", "\"b\"")], ""))
                    .ok("both")
                    .hit()
                    .hits(2)
                    .sent("if-none-match", "\"b\"")
                    .sent("if-modified-since", lm),
            ],
        ),
        row(
            "s4_3_1_weak_etag_is_sent_as_is",
            ok(&[("cache-control", "max-age=0"), ("etag", "W/\"w\"")], "weak"),
            vec![
                get().ok("weak").miss().hits(1),
                get()
                    .route(fixed(304, &[("etag", "W/\"w\"")], ""))
                    .ok("weak")
                    .hit()
                    .hits(2)
                    .sent("if-none-match", "W/\"w\""),
            ],
        ),
        row(
            "s4_3_1_without_validator_the_request_is_unconditional",
            ok(&[("cache-control", "max-age=0")], "plain"),
            vec![
                get().ok("plain").miss().hits(1),
                get().ok("plain").miss().hits(2).not_sent("if-none-match").not_sent("if-modified-since"),
            ],
        ),
        row(
            "s4_3_1_client_conditionals_are_not_forwarded_on_a_fill",
            ok(&[MAX_AGE_600, ("etag", "\"f\"")], "f"),
            vec![get()
                .h("if-none-match", "\"zzz\"")
                .h("if-modified-since", ago(10))
                .ok("f")
                .miss()
                .hits(1)
                .not_sent("if-none-match")
                .not_sent("if-modified-since")],
        ),
        row(
            "s4_3_1_stored_validator_replaces_the_clients_on_revalidation",
            ok(&[("cache-control", "max-age=0"), ("etag", "\"s1\"")], "s"),
            vec![
                get().ok("s").miss().hits(1),
                get()
                    .route(fixed(304, &[("etag", "\"s1\"")], ""))
                    .h("if-none-match", "\"c9\"")
                    .ok("s")
                    .hit()
                    .hits(2)
                    .sent("if-none-match", "\"s1\""),
            ],
        ),
        row(
            "s4_3_3_revalidation_answered_with_404_replaces_the_entry",
            ok(&[("cache-control", "max-age=0"), ("etag", "\"g\"")], "here"),
            vec![
                get().ok("here").miss().hits(1),
                get()
                    .route(fixed(404, &[MAX_AGE_600], "gone"))
                    .status(404)
                    .body("gone")
                    .miss()
                    .hits(2)
                    .sent("if-none-match", "\"g\""),
                get().status(404).body("gone").hit().hits(2),
            ],
        ),
        row(
            "s4_3_4_304_without_freshness_leaves_the_entry_stale",
            validating("\"k\"", ok(&[("cache-control", "max-age=0"), ("etag", "\"k\"")], "k")),
            vec![
                get().ok("k").miss().hits(1),
                get().ok("k").hit().hits(2).sent("if-none-match", "\"k\""),
                get().ok("k").hit().hits(3).sent("if-none-match", "\"k\""),
            ],
        ),
        row(
            "s4_3_4_304_does_not_replace_content_encoding",
            ok(&[("cache-control", "max-age=0"), ("etag", "\"ce\""), ("content-encoding", "identity")], "ce"),
            vec![
                get().ok("ce").miss().hits(1),
                get()
                    .route(fixed(304, &[("etag", "\"ce\""), ("content-encoding", "gzip"), MAX_AGE_600], ""))
                    .ok("ce")
                    .hit()
                    .hits(2)
                    .has("content-encoding", "identity"),
                get().ok("ce").hit().hits(2).has("content-encoding", "identity"),
            ],
        ),
        row(
            "s4_3_4_hop_by_hop_fields_of_a_304_are_not_merged",
            ok(&[("cache-control", "max-age=0"), ("etag", "\"hb\"")], "hb"),
            vec![
                get().ok("hb").miss().hits(1),
                get()
                    .route(fixed(
                        304,
                        &[
                            ("etag", "\"hb\""),
                            ("connection", "x-hop"),
                            ("x-hop", "1"),
                            ("keep-alive", "timeout=5"),
                            MAX_AGE_600,
                        ],
                        "",
                    ))
                    .ok("hb")
                    .hit()
                    .hits(2)
                    .lacks("x-hop")
                    .lacks("keep-alive"),
                get().ok("hb").hit().hits(2).lacks("x-hop").lacks("keep-alive"),
            ],
        ),
        row(
            "s4_3_2_if_none_match_on_a_fresh_entry_is_304_from_cache",
            fresh_tagged("\"c1\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get()
                    .h("if-none-match", "\"c1\"")
                    .status(304)
                    .body("")
                    .hit()
                    .hits(1)
                    .has("etag", "\"c1\"")
                    .has("cache-control", "max-age=600")
                    .has("last-modified", lm)
                    .present("date")
                    .present("age"),
            ],
        ),
        row(
            "s4_3_2_weak_if_none_match_matches",
            fresh_tagged("\"c2\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-none-match", "W/\"c2\"").status(304).body("").hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_if_none_match_list_matches",
            fresh_tagged("\"c3\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-none-match", "\"a\", \"c3\"").status(304).body("").hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_if_none_match_star_matches",
            fresh_tagged("\"c4\""),
            vec![get().ok("tagged").miss().hits(1), get().h("if-none-match", "*").status(304).hit().hits(1)],
        ),
        row(
            "s4_3_2_if_none_match_mismatch_gets_the_full_response",
            fresh_tagged("\"c5\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-none-match", "\"zz\"").ok("tagged").hit().hits(1).has("etag", "\"c5\""),
            ],
        ),
        row(
            "s4_3_2_if_modified_since_not_modified_is_304",
            fresh_tagged("\"c6\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-modified-since", ago(0)).status(304).body("").hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_if_modified_since_equal_to_last_modified_is_304",
            fresh_tagged("\"c10\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-modified-since", lm).status(304).hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_if_modified_since_older_than_last_modified_is_200",
            fresh_tagged("\"c7\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-modified-since", ago(7200)).ok("tagged").hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_if_none_match_takes_precedence_over_if_modified_since",
            fresh_tagged("\"c8\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-none-match", "\"zz\"").h("if-modified-since", ago(0)).ok("tagged").hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_invalid_if_modified_since_is_ignored",
            fresh_tagged("\"c9\""),
            vec![
                get().ok("tagged").miss().hits(1),
                get().h("if-modified-since", "recently").ok("tagged").hit().hits(1),
            ],
        ),
        row(
            "s4_3_2_conditional_miss_is_answered_304_by_the_cache",
            ok(&[MAX_AGE_600, ("etag", "\"m\"")], "m"),
            vec![
                get()
                    .h("if-none-match", "\"m\"")
                    .status(304)
                    .body("")
                    .miss()
                    .hits(1)
                    .not_sent("if-none-match"),
                get().ok("m").hit().hits(1),
            ],
        ),
        row(
            // RFC 9110 §13.2.1: preconditions are ignored when the response would not be 2xx.
            "s4_3_2_preconditions_ignored_for_a_stored_404",
            fixed(404, &[MAX_AGE_600, ("etag", "\"nf\"")], "nf"),
            vec![
                get().status(404).body("nf").miss().hits(1),
                get().h("if-none-match", "\"nf\"").status(404).body("nf").hit().hits(1),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_3_validation_table() {
    table(60, &[], validation_rows).await;
}

// ---------------------------------------------------------------------------------------------
// RFC 5861: stale-while-revalidate and stale-if-error.

fn stale_extension_rows(_port: u16) -> Vec<Row> {
    let swr = |extra: &str, body: &str| {
        let cc = format!("max-age=1, stale-while-revalidate=600{extra}");
        ok(&[("date", ago(100)), ("cache-control", cc.as_str())], body)
    };
    let sie =
        |body: &str| ok(&[("date", ago(100)), ("cache-control", "max-age=1, stale-if-error=600")], body);
    let new = || ok(&[MAX_AGE_600], "new");
    let boom = |status: u16| fixed(status, &[], "boom");
    let mut rows = vec![
        row(
            "rfc5861_s3_stale_while_revalidate_serves_stale_and_refreshes_once",
            swr("", "old"),
            vec![
                get().ok("old").miss().hits(1),
                get()
                    .route(new())
                    .ok("old")
                    .hit()
                    .cs("httpcache-proxy; hit")
                    .cs_not("fwd=")
                    .eventually_hits(2),
                get().retry().ok("new").hit().hits(2),
                get().ok("new").hit().hits(2),
            ],
        ),
        row(
            "rfc5861_s3_background_revalidation_is_conditional",
            ok(
                &[
                    ("date", ago(100)),
                    ("cache-control", "max-age=1, stale-while-revalidate=600"),
                    ("etag", "\"w\""),
                ],
                "old",
            ),
            vec![
                get().ok("old").miss().hits(1),
                get()
                    .route(fixed(304, &[("etag", "\"w\""), MAX_AGE_600], ""))
                    .ok("old")
                    .hit()
                    .cs_not("fwd=")
                    .eventually_hits(2)
                    .sent("if-none-match", "\"w\""),
                get().retry().ok("old").hit().cs("; hit").ttl_in(590, 600).hits(2),
            ],
        ),
        row(
            "rfc5861_s3_outside_the_window_the_fetch_is_synchronous",
            ok(&[("date", ago(1000)), ("cache-control", "max-age=1, stale-while-revalidate=60")], "old"),
            vec![get().ok("old").miss().hits(1), get().route(new()).ok("new").miss().hits(2)],
        ),
        row(
            "rfc5861_s3_must_revalidate_forbids_stale_while_revalidate",
            swr(", must-revalidate", "old"),
            vec![get().ok("old").miss().hits(1), get().route(new()).ok("new").miss().hits(2)],
        ),
        row(
            "rfc5861_s3_request_no_cache_forbids_stale_while_revalidate",
            swr("", "old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(new()).h("cache-control", "no-cache").ok("new").miss().hits(2),
            ],
        ),
        row(
            "rfc5861_s4_stale_if_error_with_validator_serves_stale_on_500",
            ok(
                &[("date", ago(100)), ("cache-control", "max-age=1, stale-if-error=600"), ("etag", "\"se\"")],
                "old",
            ),
            vec![
                get().ok("old").miss().hits(1),
                get().route(boom(500)).ok("old").hit().hits(2).sent("if-none-match", "\"se\""),
            ],
        ),
        row(
            "rfc5861_s4_stale_if_error_window_passed_passes_the_error",
            ok(&[("date", ago(1000)), ("cache-control", "max-age=1, stale-if-error=60")], "old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(boom(500)).status(500).body("boom").miss().hits(2),
            ],
        ),
        row(
            "rfc5861_s4_without_stale_if_error_the_500_is_passed",
            ok(&[("date", ago(100)), ("cache-control", "max-age=1")], "old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(boom(500)).status(500).body("boom").miss().hits(2),
            ],
        ),
        row(
            "rfc5861_s4_stale_if_error_is_not_for_4xx",
            sie("old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(fixed(404, &[], "nf")).status(404).body("nf").hits(2),
            ],
        ),
        row(
            "rfc5861_s4_request_stale_if_error_serves_stale_on_500",
            ok(&[("date", ago(100)), ("cache-control", "max-age=1")], "old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(boom(500)).h("cache-control", "stale-if-error=600").ok("old").hit().hits(2),
            ],
        ),
        row(
            // Deviation 8: request no-cache refuses stale-if-error.
            "rfc5861_s4_request_no_cache_refuses_stale_if_error",
            sie("old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(boom(500)).h("cache-control", "no-cache").status(500).body("boom").hits(2),
            ],
        ),
        row(
            // Deviation 8: response no-cache refuses stale-if-error.
            "rfc5861_s4_response_no_cache_refuses_stale_if_error",
            ok(&[("cache-control", "max-age=600, no-cache, stale-if-error=600")], "old"),
            vec![get().ok("old").miss().hits(1), get().route(boom(500)).status(500).body("boom").hits(2)],
        ),
    ];
    for status in [500u16, 502, 503, 504] {
        rows.push(row(
            format!("rfc5861_s4_stale_if_error_serves_stale_on_{status}"),
            sie("old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(boom(status)).ok("old").hit().hits(2),
                get().route(new()).ok("new").miss().hits(3),
            ],
        ));
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc5861_stale_extensions_table() {
    table(60, &[], stale_extension_rows).await;
}

// ---------------------------------------------------------------------------------------------
// §4.4 Invalidation.

fn invalidation_rows(port: u16) -> Vec<Row> {
    let v = |b: &str| ok(&[MAX_AGE_600], b);
    let mut rows = Vec::new();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        rows.push(row(
            format!("s4_4_{}_success_invalidates", method.to_lowercase()),
            v("v1"),
            vec![
                get().ok("v1").miss().hits(1),
                get().ok("v1").hit().hits(1),
                req(method).ok("v1").miss().hits(2).cs("fwd=bypass; fwd-status=200"),
                get().route(v("v2")).ok("v2").miss().hits(3),
            ],
        ));
    }
    rows.push(row(
        "s4_4_post_answered_303_invalidates",
        v("v1"),
        vec![
            get().ok("v1").miss().hits(1),
            req("POST").route(fixed(303, &[("location", "/else")], "see")).status(303).hits(2),
            get().route(v("v2")).ok("v2").miss().hits(3),
        ],
    ));
    for (status, name) in [(500u16, "500"), (404, "404")] {
        rows.push(row(
            format!("s4_4_post_answered_{name}_does_not_invalidate"),
            v("v1"),
            vec![
                get().ok("v1").miss().hits(1),
                req("POST").route(fixed(status, &[], "err")).status(status).body("err").hits(2),
                get().route(v("v2")).ok("v1").hit().hits(2),
            ],
        ));
    }
    rows.push(row(
        "s4_4_options_does_not_invalidate",
        v("v1"),
        vec![
            get().ok("v1").miss().hits(1),
            req("OPTIONS").ok("v1").hits(2),
            get().route(v("v2")).ok("v1").hit().hits(2),
        ],
    ));
    let referenced = |name: &str, field: &str, value: String, invalidated: bool| {
        let last = if invalidated {
            get().at("/target").ok("t2").miss().hits(2)
        } else {
            get().at("/target").ok("t1").hit().hits(1)
        };
        row(
            name,
            fixed(201, &[(field, value.as_str())], "created"),
            vec![
                get().at("/target").route_at("/target", v("t1")).ok("t1").miss().hits(1),
                get().at("/target").ok("t1").hit().hits(1),
                req("POST").status(201).body("created").hits(1),
                last.route_at("/target", v("t2")),
            ],
        )
    };
    let base = |n: &str| format!("/{n}/target");
    rows.push(referenced(
        "s4_4_location_same_origin_path_is_invalidated",
        "location",
        base("s4_4_location_same_origin_path_is_invalidated"),
        true,
    ));
    rows.push(referenced(
        "s4_4_absolute_location_same_origin_is_invalidated",
        "location",
        format!("http://127.0.0.1:{port}{}", base("s4_4_absolute_location_same_origin_is_invalidated")),
        true,
    ));
    rows.push(referenced(
        "s4_4_content_location_same_origin_is_invalidated",
        "content-location",
        base("s4_4_content_location_same_origin_is_invalidated"),
        true,
    ));
    rows.push(referenced(
        "s4_4_location_of_another_host_is_not_invalidated",
        "location",
        format!("http://other.invalid:{port}{}", base("s4_4_location_of_another_host_is_not_invalidated")),
        false,
    ));
    rows.push(referenced(
        "s4_4_location_of_another_port_is_not_invalidated",
        "location",
        format!("http://127.0.0.1:1{}", base("s4_4_location_of_another_port_is_not_invalidated")),
        false,
    ));
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_4_invalidation_table() {
    table(60, &[], invalidation_rows).await;
}

/// §4.4: Location is a URI reference; a relative one names a resource relative to the target.
fn relative_location_rows(_port: u16) -> Vec<Row> {
    let v = |b: &str| ok(&[MAX_AGE_600], b);
    vec![row(
        "s4_4_relative_location_is_resolved_and_invalidated",
        v("unused"),
        vec![
            get().at("/dir/target").route_at("/dir/target", v("t1")).ok("t1").miss().hits(1),
            req("POST")
                .at("/dir/post")
                .route_at("/dir/post", fixed(201, &[("location", "target")], "created"))
                .status(201)
                .hits(1),
            get().at("/dir/target").route_at("/dir/target", v("t2")).ok("t2").miss().hits(2),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_4_relative_location_invalidation() {
    table(60, &[], relative_location_rows).await;
}

// ---------------------------------------------------------------------------------------------
// HEAD (RFC 9110 §9.3.2 with RFC 9111 §4).

fn head_rows(_port: u16) -> Vec<Row> {
    vec![
        row(
            "s9110_9_3_2_head_is_served_from_a_stored_get",
            ok(&[MAX_AGE_600], "hello world"),
            vec![
                get().ok("hello world").miss().hits(1),
                head().ok("").hit().hits(1).has("content-length", "11").present("age"),
            ],
        ),
        row(
            "s9110_9_3_2_head_miss_goes_upstream_and_stores_nothing",
            ok(&[MAX_AGE_600], "hello"),
            vec![
                head().ok("").miss().hits(1).cs("fwd=uri-miss").cs_not("stored"),
                get().ok("hello").miss().hits(2),
                head().ok("").hit().hits(2),
            ],
        ),
        row(
            "s9110_9_3_2_head_only_if_cached_miss_is_504",
            ok(&[MAX_AGE_600], "x"),
            vec![head().h("cache-control", "only-if-cached").status(504).hits(0)],
        ),
        row(
            "s9110_9_3_2_head_on_a_stale_entry_revalidates_it",
            ok(&[("cache-control", "max-age=0"), ("etag", "\"hd\"")], "stale body"),
            vec![
                get().ok("stale body").miss().hits(1),
                head()
                    .route(fixed(304, &[("etag", "\"hd\""), MAX_AGE_600], ""))
                    .ok("")
                    .hit()
                    .hits(2)
                    .sent("if-none-match", "\"hd\"")
                    .has("content-length", "10"),
                get().ok("stale body").hit().hits(2),
            ],
        ),
        row(
            "s9110_9_3_2_head_with_matching_if_none_match_is_304",
            ok(&[MAX_AGE_600, ("etag", "\"h3\"")], "h3"),
            vec![
                get().ok("h3").miss().hits(1),
                head().h("if-none-match", "\"h3\"").status(304).hit().hits(1),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s9110_head_table() {
    table(60, &[], head_rows).await;
}

/// A raw origin that records each request line and answers with a fixed head and body (no
/// body for HEAD), closing every connection.
struct LineOrigin {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LineOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LineOrigin {
    async fn start(head: &'static str, body: &'static str) -> LineOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = lines.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let line = text.lines().next().unwrap_or_default().to_string();
                    let is_head = line.starts_with("HEAD ");
                    seen.lock().push(line);
                    let mut out =
                        format!("{head}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    if !is_head {
                        out.push_str(body);
                    }
                    let _ = stream.write_all(out.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        LineOrigin { port, lines, task }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s9110_9_3_2_head_miss_is_forwarded_as_head_and_get_as_get() {
    let origin = LineOrigin::start("HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n", "hello").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port, dir.path()).start();
    let url = proxy.url(origin.port, "/m");
    let first = send("HEAD", &url, &[]).await.unwrap();
    assert_eq!((first.status.as_u16(), first.body.len()), (200, 0));
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(origin.lines(), ["HEAD /m HTTP/1.1"]);
    let full = fetch(&url).await;
    assert_eq!((full.body.as_ref(), full.header("x-cache")), (&b"hello"[..], Some("MISS")));
    assert_eq!(origin.lines(), ["HEAD /m HTTP/1.1", "GET /m HTTP/1.1"]);
    let again = send("HEAD", &url, &[]).await.unwrap();
    assert_eq!((again.header("x-cache"), again.header("content-length")), (Some("HIT"), Some("5")));
    assert_eq!(origin.lines().len(), 2, "HEAD served from the stored GET");
}

// ---------------------------------------------------------------------------------------------
// RFC 9211 Cache-Status.

fn cache_status_rows(_port: u16) -> Vec<Row> {
    let lm = last_modified();
    vec![
        row(
            "rfc9211_miss_stored_then_hit_with_ttl",
            ok(&[MAX_AGE_600], "c"),
            vec![
                get()
                    .ok("c")
                    .miss()
                    .hits(1)
                    .cs("httpcache-proxy; fwd=uri-miss; fwd-status=200; ttl=")
                    .cs("; stored")
                    .ttl_in(599, 600),
                get().ok("c").hit().hits(1).cs("httpcache-proxy; hit; ttl=").ttl_in(595, 600),
            ],
        ),
        row(
            "rfc9211_not_stored_has_no_stored_parameter",
            ok(&[("cache-control", "no-store")], "c"),
            vec![get().ok("c").miss().hits(1).cs_is("httpcache-proxy; fwd=uri-miss; fwd-status=200")],
        ),
        row(
            "rfc9211_fwd_status_is_the_origin_status",
            fixed(404, &[("last-modified", lm.as_str())], "nf"),
            vec![get()
                .status(404)
                .miss()
                .hits(1)
                .cs("fwd=uri-miss; fwd-status=404; ttl=")
                .cs("; stored")
                .ttl_in(59, 60)],
        ),
        row(
            "rfc9211_revalidation_reports_fwd_stale_and_304",
            validating("\"cs\"", ok(&[("cache-control", "max-age=0"), ("etag", "\"cs\"")], "c")),
            vec![
                get().ok("c").miss().hits(1),
                get().ok("c").hit().hits(2).cs("httpcache-proxy; fwd=stale; fwd-status=304; ttl="),
            ],
        ),
        row(
            "rfc9211_unsafe_method_reports_fwd_bypass",
            ok(&[], "c"),
            vec![req("DELETE").ok("c").miss().hits(1).cs_is("httpcache-proxy; fwd=bypass; fwd-status=200")],
        ),
        row(
            "rfc9211_request_no_store_reports_fwd_request",
            ok(&[MAX_AGE_600], "c"),
            vec![get()
                .h("cache-control", "no-store")
                .ok("c")
                .miss()
                .hits(1)
                .cs_is("httpcache-proxy; fwd=request; fwd-status=200")],
        ),
        row(
            "rfc9211_stale_hit_has_a_negative_ttl",
            ok(&[("date", ago(700)), MAX_AGE_600], "c"),
            vec![
                get().ok("c").miss().hits(1),
                get().h("cache-control", "max-stale").ok("c").hit().hits(1).cs("httpcache-proxy; hit; ttl=-"),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9211_cache_status_table() {
    table(60, &[], cache_status_rows).await;
}

/// Cache-Status parameters that misreport what happened.
fn cache_status_detail_rows(_port: u16) -> Vec<Row> {
    vec![
        row(
            // RFC 9211 §2.2: fwd=stale when the cache had a response but it was stale;
            // uri-miss means no stored response matched the URI.
            "rfc9211_refetch_of_a_stale_entry_reports_fwd_stale",
            ok(&[("cache-control", "max-age=0")], "c"),
            vec![get().ok("c").miss().hits(1), get().ok("c").miss().hits(2).cs("fwd=stale")],
        ),
        row(
            // RFC 9211 §2.2: fwd=request when a fresh response was selected but the request
            // directives did not allow its use.
            "rfc9211_request_no_cache_on_a_fresh_entry_reports_fwd_request",
            validating("\"nr\"", ok(&[MAX_AGE_600, ("etag", "\"nr\"")], "c")),
            vec![
                get().ok("c").miss().hits(1),
                get().h("cache-control", "no-cache").ok("c").hit().hits(2).cs("fwd=request"),
            ],
        ),
        row(
            // RFC 9211 §2.1: hit means the request was not forwarded. stale-if-error forwarded it
            // and got a 500: that is fwd=stale with fwd-status=500.
            "rfc9211_stale_if_error_is_not_reported_as_a_hit",
            ok(&[("date", ago(100)), ("cache-control", "max-age=1, stale-if-error=600")], "old"),
            vec![
                get().ok("old").miss().hits(1),
                get().route(fixed(500, &[], "boom")).ok("old").hits(2).cs_not("; hit").cs("fwd-status=500"),
            ],
        ),
        row(
            // RFC 9211 §2.4: ttl is the remaining freshness lifetime (lifetime − current age).
            "rfc9211_miss_ttl_subtracts_the_current_age",
            ok(&[("age", "100"), MAX_AGE_600], "c"),
            vec![get().ok("c").miss().hits(1).ttl_in(495, 500)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9211_cache_status_details() {
    table(60, &[], cache_status_detail_rows).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9211_coalesced_requests_report_collapsed() {
    let env = Env::start(60, &[]).await;
    env.origin.route(
        "/co",
        Behaviour::Delay { delay: Duration::from_millis(400), then: Box::new(ok(&[MAX_AGE_600], "shared")) },
    );
    let url = env.url("/co");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send("GET", &url, &[]).await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, &b"shared"[..]));
        statuses.push(got.header("cache-status").unwrap().to_string());
    }
    assert_eq!(env.origin.hits("/co"), 1, "{statuses:?}");
    // The leader's ttl is 600 less the whole seconds its response spent on the way (the
    // origin's Date is truncated to the second), so it may read 599.
    let leader = |s: &str| {
        ["600", "599"]
            .iter()
            .any(|t| s == format!("httpcache-proxy; fwd=uri-miss; fwd-status=200; ttl={t}; stored"))
    };
    let follower = "httpcache-proxy; fwd=uri-miss; fwd-status=200; stored; collapsed";
    assert_eq!(statuses.iter().filter(|s| leader(s)).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| leader(s) || s == follower || s.starts_with("httpcache-proxy; hit")));
    assert!(statuses.iter().any(|s| s == follower), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_responses_that_may_not_be_shared_are_not_collapsed() {
    let env = Env::start(60, &[]).await;
    env.origin.route(
        "/private",
        Behaviour::Delay {
            delay: Duration::from_millis(300),
            then: Box::new(ok(&[("cache-control", "private, max-age=600")], "mine")),
        },
    );
    let url = env.url("/private");
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send("GET", &url, &[]).await.unwrap() })
        })
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.body, "mine");
        assert!(!got.header("cache-status").unwrap().contains("collapsed"));
    }
    assert_eq!(env.origin.hits("/private"), 3, "each request fetched for itself");
}

// ---------------------------------------------------------------------------------------------
// Hop-by-hop fields (RFC 9110 §7.6.1, RFC 9111 §3.1).

fn hop_headers(step: Step) -> Step {
    step.h("Connection", "close, X-Foo")
        .h("X-Foo", "1")
        .h("Keep-Alive", "timeout=5")
        .h("TE", "trailers")
        .h("Upgrade", "h2c")
        .h("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .h("Proxy-Connection", "keep-alive")
        .h("X-End", "kept")
}

fn hop_stripped(step: Step) -> Step {
    step.not_sent("x-foo")
        .not_sent("keep-alive")
        .not_sent("te")
        .not_sent("upgrade")
        .not_sent("proxy-authorization")
        .not_sent("proxy-connection")
        .sent("x-end", "kept")
}

const HOP_RESPONSE: [(&str, &str); 6] = [
    ("connection", "x-secret"),
    ("x-secret", "s"),
    ("keep-alive", "timeout=5"),
    ("proxy-authenticate", "Basic realm=\"x\""),
    ("upgrade", "foo/2"),
    ("x-end", "kept"),
];

fn no_hop_response(step: Step) -> Step {
    step.lacks("x-secret")
        .lacks("keep-alive")
        .lacks("proxy-authenticate")
        .lacks("upgrade")
        .has("x-end", "kept")
}

fn hop_rows(_port: u16) -> Vec<Row> {
    let mut stored = HOP_RESPONSE.to_vec();
    stored.push(MAX_AGE_600);
    let mut passed = HOP_RESPONSE.to_vec();
    passed.push(("cache-control", "no-store"));
    vec![
        row(
            "s7_6_1_request_hop_by_hop_fields_are_not_forwarded_on_a_miss",
            ok(&[MAX_AGE_600], "h"),
            vec![hop_stripped(hop_headers(get().raw()).ok("h").miss().hits(1))],
        ),
        row(
            "s7_6_1_request_hop_by_hop_fields_are_not_forwarded_on_revalidation",
            validating("\"hv\"", ok(&[("cache-control", "max-age=0"), ("etag", "\"hv\"")], "h")),
            vec![
                get().ok("h").miss().hits(1),
                hop_stripped(hop_headers(get().raw()).ok("h").hit().hits(2).sent("if-none-match", "\"hv\"")),
            ],
        ),
        row(
            "s7_6_1_request_hop_by_hop_fields_are_not_forwarded_on_unsafe_methods",
            ok(&[], "p"),
            vec![hop_stripped(hop_headers(req("POST").raw()).ok("p").miss().hits(1))],
        ),
        row(
            "s7_6_1_request_hop_by_hop_fields_are_not_forwarded_with_request_no_store",
            ok(&[], "n"),
            vec![hop_stripped(
                hop_headers(get().raw()).h("Cache-Control", "no-store").ok("n").miss().hits(1),
            )],
        ),
        row(
            "s7_6_1_response_hop_by_hop_fields_are_neither_forwarded_nor_stored",
            ok(&stored, "r"),
            vec![no_hop_response(get().ok("r").miss().hits(1)), no_hop_response(get().ok("r").hit().hits(1))],
        ),
        row(
            "s7_6_1_response_hop_by_hop_fields_are_not_forwarded_when_not_stored",
            ok(&passed, "r"),
            vec![no_hop_response(get().ok("r").miss().hits(1))],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s7_6_1_hop_by_hop_table() {
    let env = Env::start(60, &[]).await;
    // The origin really sends the response fields the rows expect the proxy to drop.
    let mut stored = HOP_RESPONSE.to_vec();
    stored.push(MAX_AGE_600);
    env.origin.route("/direct", ok(&stored, "r"));
    let direct = fetch(&format!("http://127.0.0.1:{}/direct", env.origin.port())).await;
    for (name, _) in HOP_RESPONSE {
        assert!(direct.headers.contains_key(name), "origin sends {name}");
    }
    let rows = hop_rows(env.origin.port());
    assert_rows(run_rows(&env, rows).await);
}

// ---------------------------------------------------------------------------------------------
// §4.2.4 / §5.2.2.2: an origin that cannot be reached.

#[tokio::test(flavor = "multi_thread")]
async fn s4_2_4_unreachable_origin_stale_rules() {
    let origin = RawOrigin::start(Bytes::new()).await;
    let port = origin.port();
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, port, dir.path()).start();
    let reply = |cc: &str, date: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nDate: {date}\r\nCache-Control: {cc}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nold"
        )
    };
    let stale = ago(100);
    let paths = [
        ("/must-revalidate", "max-age=1, must-revalidate, stale-if-error=600", stale),
        ("/proxy-revalidate", "max-age=1, proxy-revalidate, stale-if-error=600", stale),
        ("/s-maxage", "s-maxage=1, stale-if-error=600", stale),
        ("/stale-if-error", "max-age=1, stale-if-error=600", stale),
        ("/plain-stale", "max-age=1", stale),
        ("/fresh-must-revalidate", "max-age=600, must-revalidate", ago(0)),
    ];
    for (i, (path, cc, date)) in paths.iter().enumerate() {
        origin.set_reply(reply(cc, date));
        let got = fetch(&proxy.url(port, path)).await;
        assert_eq!((got.body.as_ref(), got.header("x-cache")), (&b"old"[..], Some("MISS")), "{path}");
        assert_eq!(origin.hits(), i + 1);
    }
    drop(origin);
    let closed =
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", port)).is_err())
            .await;
    assert!(closed, "origin port still accepts connections");
    let mut failures = Vec::new();
    for (path, cc, _) in &paths {
        let got = fetch(&proxy.url(port, path)).await;
        let served_stale = got.status == 200 && got.body == "old" && got.header("x-cache") == Some("HIT");
        let expect_stored = *path == "/stale-if-error" || *path == "/fresh-must-revalidate";
        let ok = if expect_stored { served_stale } else { got.status.is_server_error() && got.body != "old" };
        if !ok {
            failures.push(format!(
                "{path} ({cc}): {} {:?} {:?}",
                got.status,
                got.header("x-cache"),
                got.body
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

// ---------------------------------------------------------------------------------------------
// §4.3.4 for entries too large for the memory tier (body served from the entry file).

async fn large_entry_revalidation(check_freshened: bool) {
    const LEN: u64 = 200_000;
    let env = Env::start(60, &["--memory-size", "1MiB"]).await;
    let headers = owned(&[("cache-control", "max-age=0"), ("etag", "\"big\"")]);
    env.origin.route("/big", Behaviour::Pattern { len: LEN, headers });
    let url = env.url("/big");
    let first = send("GET", &url, &[]).await.unwrap();
    assert_eq!((first.status.as_u16(), first.body.len() as u64), (200, LEN));
    // The body streams to disk in the background: wait until the entry is usable.
    let probe = [("cache-control".to_string(), "only-if-cached, max-stale".to_string())];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = send("GET", &url, &probe).await.unwrap();
        if got.status == 200 {
            assert_eq!(got.body.len() as u64, LEN);
            break;
        }
        assert!(Instant::now() < deadline, "large entry never became usable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.origin.hits("/big"), 1);
    env.origin.route("/big", fixed(304, &[("etag", "\"big\""), MAX_AGE_600, ("x-version", "2")], ""));
    let revalidated = send("GET", &url, &[]).await.unwrap();
    assert_eq!(revalidated.status, 200);
    assert!(revalidated.body == pattern(0, LEN), "stored body served after the 304");
    assert_eq!(revalidated.header("x-cache"), Some("HIT"));
    assert_eq!(revalidated.header("x-version"), Some("2"));
    assert_eq!(env.origin.hits("/big"), 2);
    let sent = env.origin.last_request("/big").unwrap();
    assert_eq!(sent.get("if-none-match").unwrap(), "\"big\"");
    if check_freshened {
        // §4.3.4: the cache MUST update the stored response with the 304's fields, which made it
        // fresh for 600 s: the next request is a hit without going to the origin.
        let again = send("GET", &url, &[]).await.unwrap();
        assert_eq!(again.header("x-cache"), Some("HIT"));
        assert_eq!(again.header("x-version"), Some("2"));
        assert_eq!(env.origin.hits("/big"), 2, "freshened entry reused without the origin");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_3_4_large_stale_entry_is_revalidated_and_served_from_its_file() {
    large_entry_revalidation(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_3_4_large_entry_is_freshened_by_a_304() {
    large_entry_revalidation(true).await;
}

// ---------------------------------------------------------------------------------------------
// §4.3.4 / §5.2.2.4: what a 304 or a shared fetch may do to other requests.

fn restricting_304_rows(_port: u16) -> Vec<Row> {
    let stored = || ok(&[("cache-control", "max-age=0"), ("etag", "\"a\"")], "A");
    let after = |cc: &str| fixed(304, &[("etag", "\"a\""), ("cache-control", cc)], "");
    vec![
        row(
            // §5.2.2.5: no-store in the 304 means the (updated) response must not be kept.
            "s4_3_4_304_with_no_store_ends_reuse_of_the_entry",
            stored(),
            vec![
                get().ok("A").miss().hits(1),
                get().route(after("max-age=600, no-store")).ok("A").hits(2).sent("if-none-match", "\"a\""),
                get().route(ok(&[MAX_AGE_600], "B")).ok("B").miss().hits(3),
            ],
        ),
        row(
            // §5.2.2.7: private in the 304 means a shared cache must not keep the response.
            "s4_3_4_304_with_private_ends_reuse_of_the_entry",
            stored(),
            vec![
                get().ok("A").miss().hits(1),
                get().route(after("max-age=600, private")).ok("A").hits(2),
                get().route(ok(&[MAX_AGE_600], "B")).ok("B").miss().hits(3),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_3_4_304_with_no_store_or_private() {
    table(60, &[], restricting_304_rows).await;
}

/// §4.3.4: a 304 whose strong validator matches no stored response MUST NOT update any.
#[tokio::test(flavor = "multi_thread")]
async fn s4_3_4_304_with_another_strong_etag_does_not_update() {
    let env = Env::start(60, &[]).await;
    env.origin.ok("/e", &[("cache-control", "max-age=0"), ("etag", "\"a\"")], "A");
    let url = env.url("/e");
    assert_eq!(fetch(&url).await.body, "A");
    env.origin.route("/e", fixed(304, &[("etag", "\"b\""), MAX_AGE_600], ""));
    let got = fetch(&url).await;
    let sent = env.origin.requests_to("/e");
    assert!(
        sent.iter().any(|h| h.get("if-none-match").is_some_and(|v| v == "\"a\"")),
        "the stale entry was revalidated with its own ETag"
    );
    assert!(
        !(got.body == "A" && got.header("etag") == Some("\"b\"")),
        "stored body of \"a\" served as \"b\" ({:?})",
        got.header("cache-status")
    );
    let before = env.origin.hits("/e");
    env.origin.ok("/e", &[MAX_AGE_600, ("etag", "\"b\"")], "B");
    let next = fetch(&url).await;
    assert!(env.origin.hits("/e") > before, "the stale entry was not freshened by a foreign 304");
    assert_eq!(next.body, "B");
}

/// §5.2.2.4: a no-cache response "MUST NOT be used to satisfy any other request without
/// forwarding it for validation": requests waiting on the same fetch must not share it.
async fn collapse_check(cc: &'static str) -> (usize, Vec<Bytes>) {
    let env = Env::start(60, &[]).await;
    env.origin.route(
        "/c",
        Behaviour::Delay {
            delay: Duration::from_millis(400),
            then: Box::new(Behaviour::Echo {
                name: "x-client".into(),
                headers: owned(&[("cache-control", cc)]),
            }),
        },
    );
    let url = env.url("/c");
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(
                async move { send("GET", &url, &[("x-client".into(), format!("c{i}"))]).await.unwrap() },
            )
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap().body);
    }
    (env.origin.hits("/c"), bodies)
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_fresh_response_is_shared_with_collapsed_requests() {
    let (hits, bodies) = collapse_check("max-age=600").await;
    assert_eq!(hits, 1);
    assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_2_2_4_no_cache_response_is_not_shared_with_collapsed_requests() {
    let (hits, mut bodies) = collapse_check("max-age=600, no-cache").await;
    bodies.sort();
    assert_eq!(hits, 3, "each request forwarded: {bodies:?}");
    assert_eq!(bodies, ["c0", "c1", "c2"]);
}
