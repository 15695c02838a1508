#!/usr/bin/env bash
# Two proxies behind a round-robin client, with and without the shared Redis tier: reports
# origin requests, hit ratio and throughput for each. Starts its own redis-server and origin
# on free loopback ports; bounded (REQUESTS requests or 60 s per run); stops by itself.
#   bench/shared-cache.sh [REQUESTS] [URLS]        (defaults: 4000 requests over 400 URLs)
#   BIN=target/debug/httpcache-proxy bench/shared-cache.sh   (skip the release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
requests=${1:-4000}
urls=${2:-400}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/httpcache-proxy
fi
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 1; }
dir=$(mktemp -d /tmp/httpcache-shared.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 - "$BIN" "$dir" "$requests" "$urls" <<'PY'
import http.server, random, socket, subprocess, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

binary, d, n_req, n_urls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

hits = {"n": 0}
lock = threading.Lock()
body = b"x" * 4096
class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with lock:
            hits["n"] += 1
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=300")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
threading.Thread(target=origin.serve_forever, daemon=True).start()
oport = origin.server_address[1]

rport = free_port()
redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
for _ in range(500):
    if subprocess.run(["redis-cli", "-p", str(rport), "PING"], capture_output=True).stdout.strip() == b"PONG":
        break
    time.sleep(0.01)

def start_proxy(name, shared):
    port = free_port()
    args = [binary, "60", "--port", str(port), "--upstream-port", str(oport), "--cache-dir", f"{d}/{name}"]
    if shared:
        args += ["--shared-cache", f"redis://127.0.0.1:{rport}"]
    p = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    for _ in range(1000):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p, port
        except OSError:
            time.sleep(0.01)
    raise SystemExit("proxy did not start")

def run(shared):
    hits["n"] = 0
    subprocess.run(["redis-cli", "-p", str(rport), "FLUSHALL"], capture_output=True)
    tag = "shared" if shared else "local"
    proxies = [start_proxy(f"{tag}{i}", shared) for i in range(2)]
    rng = random.Random(7)
    plan = [(i % 2, rng.randrange(n_urls)) for i in range(n_req)]   # round-robin over proxies
    cache_hits = 0
    deadline = time.monotonic() + 60
    def one(job):
        which, u = job
        if time.monotonic() > deadline:
            return None
        url = f"http://127.0.0.1:{proxies[which][1]}/127.0.0.1:{oport}/obj/{u}"
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
            return r.headers.get("x-cache") == "HIT"
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = [r for r in pool.map(one, plan) if r is not None]
    took = time.monotonic() - t0
    for p, _ in proxies:
        p.terminate(); p.wait(10)
    cache_hits = sum(results)
    print(f"{tag:>6}: {len(results)} requests over {n_urls} URLs, origin requests {hits['n']}, "
          f"hit ratio {cache_hits / len(results):.1%}, {len(results) / took:.0f} req/s")

try:
    run(False)
    run(True)
finally:
    redis.terminate(); redis.wait(10)
    origin.shutdown()
PY
