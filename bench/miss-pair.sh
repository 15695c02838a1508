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
source bench/pair-servers.sh
one_kilobyte() { mkdir -p "$1/obj" && head -c 1024 /dev/urandom > "$1/obj/1k.bin"; }
pair_servers_start misspair 28600 28690 28684 one_kilobyte

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
