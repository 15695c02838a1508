#!/usr/bin/env bash
# Unique-URL 1 KB misses, this proxy against Apache Traffic Server, in alternating 5 s runs:
# both servers and an nginx origin on CPU 0 (Traffic Server's event thread held there too),
# wrk on CPU 1. Prints requests/s, CPU per request of the proxy and of the origin, and p99.
# Outside the side-by-side harness because misses against Traffic Server swing from run to
# run by more than the margin between them: pairs taken back to back say more.
# Needs nginx, wrk, traffic_server and ../shared/bench/conf/trafficserver-setup.sh.
# Loopback only; bounded (ROUNDS x 2 runs of 5 s, PREFILL s); stops by itself.
#   bench/miss-pair.sh [ROUNDS] [PREFILL]     PREFILL: seconds of misses first (fills the
#                                             memory tier, so the pairs run while it evicts)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3}
prefill=${2:-0}
ats_setup=../shared/bench/conf/trafficserver-setup.sh
origin_port=28600 ours_port=28690 ats_port=28684
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/httpcache-proxy"
dir=$(mktemp -d /tmp/httpcache-misspair.XXXXXX)
chmod 755 "$dir"   # nginx workers and Traffic Server drop root and must reach their files
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/www/obj" "$dir/origin"
head -c 1024 /dev/urandom > "$dir/www/obj/1k.bin"
# As the harness's origin: sendfile on, so a 1 KB answer leaves as a head and a body write.
cat > "$dir/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/origin/nginx.pid;
error_log $dir/origin/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    sendfile on; tcp_nopush off; tcp_nodelay on;
    keepalive_timeout 65s; keepalive_requests 1000000; access_log off;
    client_body_temp_path $dir/origin; proxy_temp_path $dir/origin;
    fastcgi_temp_path $dir/origin; uwsgi_temp_path $dir/origin; scgi_temp_path $dir/origin;
    server { listen 127.0.0.1:$origin_port backlog=4096 reuseport; root $dir/www; }
}
EOF
taskset -c 0 nginx -c "$dir/origin/nginx.conf" & pids+=($!)
"$ats_setup" "$dir/ats" "$ats_port" "$origin_port" > /dev/null
# Traffic Server binds its event threads itself (to both CPUs by default); 4 binds event
# thread n to processing unit n, so its one event thread stays on CPU 0.
PROXY_CONFIG_EXEC_THREAD_AFFINITY=4 taskset -c 0 traffic_server --run-root="$dir/ats/runroot.yaml" \
    > "$dir/ats.log" 2>&1 & ats=$!; pids+=($ats)
taskset -c 0 "$bin" 60 --port "$ours_port" --upstream-port "$origin_port" --cache-dir "$dir/hc" \
    > "$dir/ours.log" 2>&1 & ours=$!; pids+=($ours)

ready() { curl -s -o /dev/null -f "$1"; }
up=
for _ in $(seq 300); do
    if ready "http://127.0.0.1:$ours_port/127.0.0.1:$origin_port/obj/1k.bin" \
        && ready "http://127.0.0.1:$ats_port/obj/1k.bin"; then up=1; break; fi
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "servers not ready after 30 s; logs:" >&2
    tail -5 "$dir/ours.log" "$dir/ats.log" "$dir/origin/error.log" >&2 || true
    exit 1
fi
origin_worker=$(pgrep -P "$(cat "$dir/origin/nginx.pid")" | head -1)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # name url seconds -> wrk output
    cat > "$dir/m.lua" <<EOF
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?miss=$1-$RANDOM-" .. n)
end
EOF
    taskset -c 1 wrk -t1 -c64 -d"$3"s --latency -s "$dir/m.lua" "$2"
}
run() { # name pid url
    local p0 o0 p1 o1 out
    p0=$(ticks "$2"); o0=$(ticks "$origin_worker")
    out=$(load "$1" "$3" 5)
    p1=$(ticks "$2"); o1=$(ticks "$origin_worker")
    awk -v n="$1" -v p=$((p1 - p0)) -v o=$((o1 - o0)) -v hz="$(getconf CLK_TCK)" '
        /Requests\/sec/ { r = $2 } / 99% / { q = $2 } /Non-2xx/ { bad = $NF }
        END { printf "%-14s %8.0f req/s  proxy %5.1f us/req  origin %5.1f us/req  p99 %s%s\n",
              n, r, p * 1e6 / hz / (r * 5), o * 1e6 / hz / (r * 5), q,
              bad ? "  NON-2xx: " bad : "" }' <<< "$out"
}
if [ "$prefill" -gt 0 ]; then
    load prefill "http://127.0.0.1:$ours_port/127.0.0.1:$origin_port/obj/1k.bin" "$prefill" | grep Requests/sec
fi
for _ in $(seq "$rounds"); do
    run httpcache "$ours" "http://127.0.0.1:$ours_port/127.0.0.1:$origin_port/obj/1k.bin"
    run trafficserver "$ats" "http://127.0.0.1:$ats_port/obj/1k.bin"
done
