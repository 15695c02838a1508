//! Cache rules, the config file, check-config, SIGHUP reloads and the access log, through the
//! real binary against a real origin.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const DEB: &str = "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb";
const WAIT: Duration = Duration::from_secs(20);

/// A `.deb` as Debian's mirrors serve it: no Cache-Control, Expires, Last-Modified or ETag.
fn deb_origin(origin: &Origin, path: &str) {
    origin.ok(path, &[("content-type", "application/vnd.debian.binary-package")], "!<arch>\ndebian-binary");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_httpcache-proxy"))
}

#[tokio::test(flavor = "multi_thread")]
async fn deb_rule_serves_repeat_downloads_from_cache() {
    let origin = Origin::start().await;
    deb_origin(&origin, DEB);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--rule").arg(r"\.deb$=30d").start();
    let first = get(&proxy.url(origin.port(), DEB), &[]).await;
    assert_eq!((first.status.as_u16(), first.header("x-cache")), (200, Some("MISS")));
    let second = get(&proxy.url(origin.port(), DEB), &[]).await;
    assert_eq!((second.status.as_u16(), second.header("x-cache")), (200, Some("HIT")));
    assert_eq!(second.body, first.body);
    assert_eq!(&second.body[..], b"!<arch>\ndebian-binary");
    let ttl = second.header("cache-status").unwrap_or_default();
    assert!(ttl.contains("hit; ttl=259"), "30 days of freshness: {ttl}");
    assert_eq!(origin.hits(DEB), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_rule_rfc9111_alone_caches_no_deb() {
    let origin = Origin::start().await;
    deb_origin(&origin, DEB);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).start();
    for _ in 0..2 {
        let got = get(&proxy.url(origin.port(), DEB), &[]).await;
        assert_eq!((got.status.as_u16(), got.header("x-cache")), (200, Some("MISS")));
    }
    assert_eq!(origin.hits(DEB), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_never_override_no_store_private_or_authorization() {
    let origin = Origin::start().await;
    origin.ok("/a.deb", &[("cache-control", "no-store")], "a");
    origin.ok("/b.deb", &[("cache-control", "private")], "b");
    origin.ok("/c.deb", &[], "c");
    origin.route("/404.deb", Behaviour::Fixed { status: 404, headers: vec![], body: "no".into() });
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--rule").arg(r"\.deb$=30d").start();
    for _ in 0..2 {
        get(&proxy.url(origin.port(), "/a.deb"), &[]).await;
        get(&proxy.url(origin.port(), "/b.deb"), &[]).await;
        get(&proxy.url(origin.port(), "/c.deb"), &[("authorization", "Basic dTpw")]).await;
        let nf = get(&proxy.url(origin.port(), "/404.deb"), &[]).await;
        assert_eq!(nf.status.as_u16(), 404);
    }
    assert_eq!(origin.hits("/a.deb"), 2, "no-store");
    assert_eq!(origin.hits("/b.deb"), 2, "private");
    assert_eq!(origin.hits("/c.deb"), 2, "Authorization (RFC 9111 §3.5)");
    assert_eq!(origin.hits("/404.deb"), 2, "a rule's lifetime is for successful responses only");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_keys_rule_tables_and_flag_precedence() {
    let origin = Origin::start().await;
    origin.ok("/api/x", &[("cache-control", "max-age=600")], "api");
    origin.ok("/lang", &[("cache-control", "max-age=600")], "l");
    origin.ok("/min", &[], "m");
    origin.ok("/max", &[("cache-control", "max-age=600")], "x");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("proxy.toml");
    let cache = dir.path().join("cache");
    write(
        &conf,
        &format!(
            "stale-time = 300\nport = 0\nupstream-port = 1\ncache-dir = '{}'\ncache-name = \"fromfile\"\n\n\
             [[cache-rule]]\npattern = '/api/'\nbypass = true\n\n\
             [[cache-rule]]\npattern = '/lang$'\nkey-headers = [\"Accept-Language\"]\n\n\
             [[cache-rule]]\npattern = '/min$'\nmin-ttl = \"1h\"\n\n\
             [[cache-rule]]\npattern = '/max$'\nmax-ttl = \"0s\"\n",
            cache.display()
        ),
    );
    // The file's upstream-port (1) is overridden by the flag.
    let up = origin.port().to_string();
    let proxy =
        ProxyBuilder::bare(&["--config", conf.to_str().unwrap(), "--upstream-port", &up], &cache).start();
    let url = |p: &str| format!("http://127.0.0.1:{}/127.0.0.1{p}", proxy.port);
    let got = get(&url("/min"), &[]).await;
    assert_eq!(got.status.as_u16(), 200, "the flag's upstream port is used");
    assert!(got.header("cache-status").unwrap_or_default().starts_with("fromfile;"), "{got:?}");
    assert_eq!(get(&url("/min"), &[]).await.header("x-cache"), Some("HIT"), "min-ttl gives freshness");
    for _ in 0..2 {
        get(&url("/api/x"), &[]).await;
        get(&url("/max"), &[]).await;
    }
    assert_eq!(origin.hits("/api/x"), 2, "bypass");
    assert_eq!(origin.hits("/max"), 2, "max-ttl 0s: stale at once");
    assert_eq!(get(&url("/lang"), &[("accept-language", "fr")]).await.header("x-cache"), Some("MISS"));
    assert_eq!(get(&url("/lang"), &[("accept-language", "de")]).await.header("x-cache"), Some("MISS"));
    assert_eq!(get(&url("/lang"), &[("accept-language", "fr")]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/lang"), 2, "one entry per Accept-Language");
    assert_eq!(origin.hits("/min"), 1);
}

#[test]
fn invalid_config_names_key_and_line_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.toml");
    for (text, needle) in [
        ("port = 9000\n\n# typo below\ncache-sise = \"1GiB\"\n", ":4: key 'cache-sise': unknown key"),
        ("port = 9000\ncache-size = \"lots\"\n", ":2: key 'cache-size'"),
        ("[[cache-rule]]\npattern = '\\.deb$'\nttl = \"30 days\"\n", ":3: key 'cache-rule.ttl'"),
        ("[[cache-rule]]\npattern = 'x'\nbypas = true\n", ":3:"),
        ("port = [\n", ":1:"),
    ] {
        write(&conf, text);
        let out = bin().arg("60").arg("--config").arg(&conf).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{text}: wanted {needle:?} in {err}");
        let out = bin().arg("check-config").arg(&conf).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check-config {text}: {err}");
        assert!(err.contains(needle), "check-config: wanted {needle:?} in {err}");
    }
    let out = bin().args(["60", "--config", "/nonexistent/proxy.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
    // Cross-setting checks run too.
    write(&conf, "cache-size = \"1MiB\"\nmax-object-size = \"2MiB\"\n");
    let out = bin().arg("check-config").arg(&conf).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-object-size"));
}

#[test]
fn the_example_config_passes_check_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/httpcache-proxy.toml");
    let out = bin().arg("check-config").arg(&example).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(": ok ("), "{stdout}");
}

#[test]
fn the_example_config_shows_every_setting() {
    use clap::CommandFactory;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/httpcache-proxy.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let cmd = httpcache_proxy::cli::Cli::command();
    let missing: Vec<String> = cmd
        .get_arguments()
        .map(httpcache_proxy::config::file::key_of)
        .filter(|k| !matches!(k.as_str(), "config" | "help" | "version"))
        .filter(|k| !text.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} = "))))
        .collect();
    assert!(
        missing.is_empty(),
        "add these keys (set or commented out) to {}: {missing:?}",
        example.display()
    );
}

/// A proxy started with `--config conf` (and the origin's port as a flag), for the reload tests.
fn start_with(conf: &Path, cache: &Path, origin: &Origin) -> support::proxy::ProxyProcess {
    let up = origin.port().to_string();
    ProxyBuilder::bare(&["--config", conf.to_str().unwrap(), "--upstream-port", &up], cache).start()
}

fn base_config(cache: &Path) -> String {
    format!("stale-time = 300\nport = 0\ncache-dir = '{}'\nlog-level = \"info\"\n", cache.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_rules_and_log_level() {
    let origin = Origin::start().await;
    deb_origin(&origin, DEB);
    origin.ok("/nostore", &[("cache-control", "no-store")], "n");
    let dir = tempfile::tempdir().unwrap();
    let (conf, cache) = (dir.path().join("p.toml"), dir.path().join("cache"));
    write(&conf, &base_config(&cache));
    let proxy = start_with(&conf, &cache, &origin);
    let url = |p: &str| format!("http://127.0.0.1:{}/127.0.0.1{p}", proxy.port);
    for _ in 0..2 {
        assert_eq!(get(&url(DEB), &[]).await.header("x-cache"), Some("MISS"));
    }
    get(&url("/nostore"), &[]).await;
    assert!(proxy.wait_log("target=/127.0.0.1/nostore", WAIT));
    assert!(!proxy.log().iter().any(|l| l.contains("not storable")), "no debug lines at info");

    write(
        &conf,
        &format!(
            "{}rule = ['\\.deb$=30d']\nlog-level = \"debug\"\n",
            base_config(&cache).replace("log-level = \"info\"\n", "")
        ),
    );
    proxy.signal("HUP");
    assert!(proxy.wait_log("config reloaded: rule, log-level changed", WAIT), "{:?}", proxy.log());
    // Rules apply when a stored response is assessed, so the copy stored before the reload
    // (kept, but stale on arrival) is fresh now.
    for _ in 0..2 {
        assert_eq!(get(&url(DEB), &[]).await.header("x-cache"), Some("HIT"));
    }
    assert_eq!(origin.hits(DEB), 2);
    get(&url("/nostore"), &[]).await;
    assert!(proxy.wait_log("not storable", WAIT), "debug lines after the reload");

    // Unchanged file: nothing to apply, and said so.
    proxy.signal("HUP");
    assert!(proxy.wait_log("config reloaded: no changes", WAIT));
}

/// A stored head keeps the policy's reading of it (`policy::reading`), made when the miss
/// stored it; the operator's rules are applied on top of it at every hit, so a reload still
/// reaches entries already stored and hit.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_rules_reach_entries_whose_head_was_already_read() {
    let origin = Origin::start().await;
    origin.ok("/fresh", &[("cache-control", "max-age=600")], "fresh body");
    let dir = tempfile::tempdir().unwrap();
    let (conf, cache) = (dir.path().join("p.toml"), dir.path().join("cache"));
    write(&conf, &base_config(&cache));
    let proxy = start_with(&conf, &cache, &origin);
    let url = format!("http://127.0.0.1:{}/127.0.0.1/fresh", proxy.port);
    assert_eq!(get(&url, &[]).await.header("x-cache"), Some("MISS"));
    support::until_hit(&url, b"fresh body", WAIT).await; // served from the kept reading
    assert_eq!(origin.hits("/fresh"), 1);

    // A rule that makes the entry stale at once: the next request must go to the origin.
    write(&conf, &format!("{}rule = ['/fresh$=0s']\n", base_config(&cache)));
    proxy.signal("HUP");
    assert!(proxy.wait_log("config reloaded: rule changed", WAIT), "{:?}", proxy.log());
    let after = get(&url, &[]).await;
    assert!(after.status == 200 && &after.body[..] == b"fresh body");
    assert_eq!(after.header("x-cache"), Some("MISS"), "{:?}", after.header("cache-status"));
    assert_eq!(origin.hits("/fresh"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_bad_file_keeps_serving_with_the_old_settings() {
    let origin = Origin::start().await;
    deb_origin(&origin, DEB);
    let dir = tempfile::tempdir().unwrap();
    let (conf, cache) = (dir.path().join("p.toml"), dir.path().join("cache"));
    let good = format!("{}rule = ['\\.deb$=30d']\n", base_config(&cache));
    write(&conf, &good);
    let proxy = start_with(&conf, &cache, &origin);
    let url = |p: &str| format!("http://127.0.0.1:{}/127.0.0.1{p}", proxy.port);
    assert_eq!(get(&url(DEB), &[]).await.header("x-cache"), Some("MISS"));

    // An unknown key, a bad value, broken TOML: each refused with why, the proxy unchanged.
    let bad = [
        (format!("{good}cache-rul = 1\n"), "key 'cache-rul': unknown key"),
        (format!("{good}[[cache-rule]]\npattern = '('\nbypass = true\n"), "key 'cache-rule.pattern'"),
        (good.replace("30d", "30 days"), "key 'rule'"),
        (format!("{good}rule = [\n"), "config reload failed"),
    ];
    for (n, (text, why)) in bad.iter().enumerate() {
        write(&conf, text);
        proxy.signal("HUP");
        let count = |l: &Vec<String>| l.iter().filter(|l| l.contains("config reload failed")).count();
        assert!(support::eventually(WAIT, || count(&proxy.log()) > n).await, "{:?}", proxy.log());
        let line = proxy.log().into_iter().rfind(|l| l.contains("config reload failed")).unwrap();
        assert!(line.contains(why), "wanted {why:?} in {line}");
        let got = get(&url(DEB), &[]).await;
        assert_eq!((got.status.as_u16(), got.header("x-cache")), (200, Some("HIT")), "old rules still apply");
    }
    assert_eq!(origin.hits(DEB), 1);

    // A change that needs a restart is refused whole: the rule removed with it stays.
    write(&conf, &base_config(&cache).replace("port = 0", "port = 1"));
    proxy.signal("HUP");
    assert!(proxy.wait_log("config reload refused (needs a restart): port;", WAIT), "{:?}", proxy.log());
    assert_eq!(get(&url(DEB), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits(DEB), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_in_combined_format_reopened_on_sighup() {
    let origin = Origin::start().await;
    origin.ok("/page", &[("cache-control", "max-age=60")], "hello");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let proxy = ProxyBuilder::new(300, origin.port(), &dir.path().join("cache"))
        .arg("--access-log")
        .arg(log.to_str().unwrap())
        .start();
    let headers = [("user-agent", "apt \"2.6\""), ("referer", "http://r/")];
    get(&proxy.url(origin.port(), "/page"), &headers).await;
    let want =
        format!("\"GET /127.0.0.1:{}/page HTTP/1.1\" 200 5 \"http://r/\" \"apt \\\"2.6\\\"\"", origin.port());
    let has = |p: &Path, s: &str| std::fs::read_to_string(p).is_ok_and(|t| t.contains(s));
    assert!(support::eventually(WAIT, || has(&log, &want)).await, "{:?}", std::fs::read_to_string(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("127.0.0.1 - - ["), "{text}");
    assert!(text.contains(" +0000] "), "{text}");

    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    proxy.signal("HUP");
    assert!(proxy.wait_log("access log reopened", WAIT));
    get(&proxy.url(origin.port(), "/page"), &headers).await;
    assert!(support::eventually(WAIT, || has(&log, &want)).await, "a new file after logrotate's move");
    assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn deb_rule_through_the_forward_proxy_as_apt_uses_it() {
    let origin = Origin::start().await;
    deb_origin(&origin, DEB);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--rule").arg(r"\.deb$=30d").start();
    // What apt sends with Acquire::http::Proxy: an absolute-form request line.
    let req = format!(
        "GET http://127.0.0.1:{0}{DEB} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\nUser-Agent: Debian APT-HTTP/1.3\r\n\
         Connection: close\r\n\r\n",
        origin.port()
    );
    let first = raw(proxy.port, req.as_bytes()).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.to_ascii_lowercase().contains("x-cache: miss"), "{first}");
    let second = raw(proxy.port, req.as_bytes()).await;
    assert!(second.to_ascii_lowercase().contains("x-cache: hit"), "{second}");
    assert!(second.ends_with("!<arch>\ndebian-binary"), "{second}");
    assert_eq!(origin.hits(DEB), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_limits_and_access_rules() {
    let origin = Origin::start().await;
    origin.ok("/p", &[("cache-control", "no-store")], "p");
    let long = format!("/p?{}", "x".repeat(400));
    origin.ok(&long, &[("cache-control", "no-store")], "long");
    let dir = tempfile::tempdir().unwrap();
    let (conf, cache) = (dir.path().join("p.toml"), dir.path().join("cache"));
    write(&conf, &base_config(&cache));
    let proxy = start_with(&conf, &cache, &origin);
    let url = |host: &str, p: &str| format!("http://127.0.0.1:{}/{host}{p}", proxy.port);
    assert_eq!(get(&url("127.0.0.1", &long), &[]).await.status, 200);

    // Request limits: a target over the new length is 414 from now on.
    write(&conf, &format!("{}max-uri-length = '256'\n", base_config(&cache)));
    proxy.signal("HUP");
    assert!(proxy.wait_log("config reloaded: max-uri-length changed", WAIT), "{:?}", proxy.log());
    assert_eq!(get(&url("127.0.0.1", &long), &[]).await.status, 414);
    assert_eq!(get(&url("127.0.0.1", "/p"), &[]).await.status, 200);

    // Target rules: a newly denied host is refused. (Rules are checked when connecting: this
    // name has no pooled keep-alive connection, which would serve until it idles out.)
    write(&conf, &format!("{}deny-target = ['localhost']\n", base_config(&cache)));
    proxy.signal("HUP");
    assert!(proxy.wait_log("max-uri-length, deny-target changed", WAIT), "{:?}", proxy.log());
    let refused = get(&url("localhost", "/p?new"), &[]).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(get(&url("127.0.0.1", &long), &[]).await.status, 200, "the default length is back");

    // Client access: new connections from loopback are turned away once it is not allowed.
    write(&conf, &format!("{}allow-client = ['10.0.0.0/8']\n", base_config(&cache)));
    proxy.signal("HUP");
    assert!(proxy.wait_log("allow-client, deny-target changed", WAIT), "{:?}", proxy.log());
    // The gate answers before reading the request, so a raw socket sees it whole.
    let refused = support::client::raw(proxy.port, b"GET /127.0.0.1/p HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");

    write(&conf, &base_config(&cache));
    proxy.signal("HUP");
    assert!(proxy.wait_log("config reloaded: allow-client changed", WAIT), "{:?}", proxy.log());
    assert_eq!(get(&url("127.0.0.1", "/p"), &[]).await.status, 200);
}
