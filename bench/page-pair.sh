#!/usr/bin/env bash
# Cold loads of the harness's test page (272 images, 264 of 2-60 KB and 8 of 200 KB-1 MB), this
# proxy against Apache Traffic Server, in alternating turns: both servers and an nginx origin on
# CPU 0 (Traffic Server's event thread held there too), curl on CPU 1 with 6 (CONNS) transfers in
# flight. Each load asks for every image with a new query string, so every request is a miss.
# Prints per turn the wall time per load, each server's CPU per load and the mean latency of the
# small and the large images.
# CPU comes from `perf stat` (task clock) when perf is installed: the tick-sampled utime and
# stime in /proc undercount Traffic Server on this mostly idle load (10-15 against 32-36 ms per
# load measured on 2026-12-01), so the script says which one it used.
# Needs nginx, curl, traffic_server, python3 and ../shared/bench/ (make-site.py and
# conf/trafficserver-setup.sh). Loopback only; bounded (ROUNDS x 2 x LOADS page loads, each
# curl capped at 30 s); stops by itself.
#   bench/page-pair.sh [ROUNDS] [LOADS] [CONNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3}
loads=${2:-4}
conns=${3:-6}
shared=../shared/bench
origin_port=28700 ours_port=28790 ats_port=28784
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/httpcache-proxy"
dir=$(mktemp -d /tmp/httpcache-pagepair.XXXXXX)
chmod 755 "$dir"   # nginx workers and Traffic Server drop root and must reach their files
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

python3 "$shared/make-site.py" --out "$dir/www" > /dev/null
mkdir -p "$dir/origin"
# As the harness's origin: sendfile on, no nopush.
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
"$shared/conf/trafficserver-setup.sh" "$dir/ats" "$ats_port" "$origin_port" > /dev/null
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
(cd "$dir/www" && ls images) > "$dir/images"
if perf stat -e task-clock -p "$ours" -- true > /dev/null 2>&1; then cpu_by=perf; else cpu_by=ticks; fi
echo "CPU per load from: $cpu_by"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name pid base-url
    local t0 t1 wall=0 c0 o0 c1 o1 stat="$dir/$1.stat" times="$dir/$1.times" q
    : > "$times"
    if [ $cpu_by = perf ]; then
        perf stat -e task-clock -p "$2" -o "$stat" > /dev/null 2>&1 & local perf_pid=$!
        sleep 0.2
    fi
    c0=$(ticks "$2"); o0=$(ticks "$origin_worker")
    for load in $(seq "$loads"); do
        q="?cold=$1-$RANDOM$RANDOM-$load"
        sed "s|.*|url = \"$3/images/&$q\"\noutput = \"/dev/null\"|" "$dir/images" > "$dir/curl.cfg"
        t0=$(date +%s%N)
        taskset -c 1 curl -s --parallel --parallel-immediate --parallel-max "$conns" --max-time 30 \
            -w "%{http_code} %{time_total} %{size_download}\n" -K "$dir/curl.cfg" >> "$times" 2> /dev/null
        t1=$(date +%s%N)
        wall=$((wall + (t1 - t0) / 1000))
    done
    c1=$(ticks "$2"); o1=$(ticks "$origin_worker")
    local cpu_ms
    if [ $cpu_by = perf ]; then
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        cpu_ms=$(awk -v l="$loads" '/task-clock/ { gsub(",", "", $1); printf "%.1f", $1 / l }' "$stat")
    else
        cpu_ms=$(awk -v t=$((c1 - c0)) -v l="$loads" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1000 / hz / l }')
    fi
    awk -v n="$1" -v w="$wall" -v l="$loads" -v c="$cpu_ms" -v o=$((o1 - o0)) -v hz="$(getconf CLK_TCK)" '
        $1 != 200 { bad++ }
        $3 > 150000 { big += $2; nbig++; next } { small += $2; nsmall++ }
        END { printf "%-14s wall %6.1f ms/load  proxy CPU %5.1f ms/load  origin %5.1f ms/load  small %.2f ms  large %.2f ms%s\n",
              n, w / 1000 / l, c, o * 1000 / hz / l, small * 1000 / nsmall, big * 1000 / nbig,
              bad ? "  NON-200: " bad : "" }' "$times"
}
for _ in $(seq "$rounds"); do
    run httpcache "$ours" "http://127.0.0.1:$ours_port/127.0.0.1:$origin_port"
    run trafficserver "$ats" "http://127.0.0.1:$ats_port"
done
