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
source bench/pair-servers.sh
the_site() { python3 ../shared/bench/make-site.py --out "$1" > /dev/null; }
pair_servers_start pagepair 28700 28790 28784 the_site
(cd "$dir/www" && ls images) > "$dir/images"
if perf stat -e task-clock -p "$ours" -- true > /dev/null 2>&1; then cpu_by=perf; else cpu_by=ticks; fi
echo "CPU per load from: $cpu_by"

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
