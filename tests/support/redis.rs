//! Real `redis-server` processes for the shared-tier tests: standalone or a 3-node Cluster,
//! on free ports of 127.0.0.1, without persistence, in a temporary directory; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    /// TLS port and the certificate, key and CA files, for `rediss://`.
    tls: Option<(u16, [PathBuf; 3])>,
    child: Option<Child>,
}

/// A port that was free a moment ago. Cluster nodes also need port + 10000 (the bus).
fn free_port(cluster: bool) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !cluster || (port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()) {
            return port;
        }
    }
}

/// Whether the server at `port` fails to answer PING within 150 ms (it is stalled).
pub fn stalled(port: u16) -> bool {
    let mut ping = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "PING"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli");
    let deadline = Instant::now() + Duration::from_millis(150);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = ping.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = ping.kill();
    let _ = ping.wait();
    true
}

/// Runs `redis-cli -p <port> <args>` and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out =
        Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisServer {
    /// Starts a standalone server in `dir`.
    pub fn start(dir: &Path) -> RedisServer {
        Self::start_kind(dir, false)
    }

    /// Starts a standalone server that also serves TLS with `files` (certificate, key, CA).
    pub fn start_tls(dir: &Path, files: [PathBuf; 3]) -> RedisServer {
        Self::start_kind_tls(dir, false, Some(files))
    }

    fn start_kind(dir: &Path, cluster: bool) -> RedisServer {
        Self::start_kind_tls(dir, cluster, None)
    }

    fn start_kind_tls(dir: &Path, cluster: bool, files: Option<[PathBuf; 3]>) -> RedisServer {
        for _ in 0..5 {
            let tls = files.clone().map(|f| (free_port(false), f));
            let mut s =
                RedisServer { port: free_port(cluster), dir: dir.to_path_buf(), cluster, tls, child: None };
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server did not start");
    }

    /// Starts the process on `self.port`; waits until it answers PING.
    fn spawn(&mut self) -> bool {
        let node_dir = self.dir.join(self.port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command", // DEBUG SLEEP stands in for a stalled Redis
            "local",
        ])
        .arg("--dir")
        .arg(&node_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
        }
        if let Some((port, [cert, key, ca])) = &self.tls {
            cmd.args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"]);
            cmd.arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca);
        }
        let mut child = cmd.spawn().expect("start redis-server (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // the port was taken after all
            }
            if cli(self.port, &["PING"]).trim() == "PONG" {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:<tls port>`.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls.as_ref().expect("started with TLS").0)
    }

    /// Kills the process (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server did not restart on port {}", self.port);
    }

    /// Empties this server (FLUSHALL), between checks that count keys.
    pub fn flush(&self) {
        assert_eq!(cli(self.port, &["FLUSHALL"]).trim(), "OK");
    }

    /// Names of the keys matching `pattern` on this server.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        cli(self.port, &["--scan", "--pattern", pattern]).lines().map(str::to_string).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node Redis Cluster without replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes in `dir` and joins them (`redis-cli --cluster create`).
    pub fn start(dir: &Path) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_kind(dir, true)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "cluster did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}
