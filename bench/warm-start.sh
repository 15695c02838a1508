#!/usr/bin/env bash
# Warm start-up with a large cache: writes N entries (default 100,000), starts the proxy on
# them with the origin down, and reports the time from exec to the first HIT served and to
# the end of the background index load. Loopback only; bounded; stops by itself.
#   bench/warm-start.sh [N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-100000}
dir=$(mktemp -d /tmp/httpcache-warm.XXXXXX)
trap 'rm -rf "$dir"' EXIT
origin_port=9   # nothing listens there: every answer must come from the cache
cargo build --release --quiet --example make_cache
cargo build --release --quiet
release="${CARGO_TARGET_DIR:-target}/release"
"$release/examples/make_cache" "$dir/cache" "$n" "$origin_port"
sync
python3 - "$dir" "$n" "$origin_port" "$release" <<'PY'
import subprocess, sys, time, socket, urllib.request
d, n, oport, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
port = 18877
t0 = time.monotonic()
p = subprocess.Popen([release + "/httpcache-proxy", "60", "--port", str(port), "--cache-dir", d + "/cache",
                      "--upstream-port", str(oport)], stderr=open(d + "/log", "w"))
first_hit = None
deadline = t0 + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/127.0.0.1:{oport}/obj/{n - 1}", timeout=2) as r:
            if r.headers.get("x-cache") == "HIT":
                first_hit = time.monotonic() - t0
                break
    except Exception:
        time.sleep(0.002)
loaded = None
while time.monotonic() < deadline:
    log = open(d + "/log").read()
    if "index loaded" in log:
        loaded = [l for l in log.splitlines() if "index loaded" in l][0]
        break
    time.sleep(0.01)
hits = 0
for i in range(0, n, max(1, n // 200)):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/127.0.0.1:{oport}/obj/{i}", timeout=5) as r:
        hits += r.headers.get("x-cache") == "HIT"
p.terminate(); p.wait(10)
print(f"entries: {n}")
print(f"first HIT after exec: {first_hit * 1000:.1f} ms" if first_hit else "no HIT within 30 s")
print(f"index: {loaded}")
print(f"sampled hits: {hits}/{len(range(0, n, max(1, n // 200)))}")
PY
