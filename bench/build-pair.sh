#!/usr/bin/env bash
# Two builds of this proxy against each other: the working tree (B) and a git revision (A),
# in alternating wrk runs (5 s each by default). Both builds and an nginx origin on CPU 0, wrk
# on CPU 1, the order of A and B flipped every pair (A B, B A, ...), so neither always runs
# second. Prints per pair each build's requests/s, CPU per request and p99, and B's ratios to
# A; then the median ratios. This is how the README's and BENCHMARKS.md's "in alternating pinned pairs" figures are
# taken: on this shared machine two runs of one binary differ by 10% or more, so a change is
# judged by the spread of many back-to-back pairs, not by one run.
#   bench/build-pair.sh REV [SIZE] [PAIRS] [MODE]
#     REV    the baseline, any git revision (e.g. HEAD, main~1, 6c37dd8)
#     SIZE   body size: 1k, 32k, 100k, 256k or 1m (default 100k)
#     PAIRS  default 6
#     MODE   hit (default; one URL, cached) or miss (a new URL for every request)
#   Environment: CONNS (wrk connections, default 64) and SECS (seconds per run, default 5); for
#   large misses, fewer of both keep the disk writes down (100 KB at 64 connections writes
#   gigabytes per run).
# Builds REV in a temporary git worktree with the same CARGO_TARGET_DIR, so only this crate is
# compiled twice. Needs nginx, wrk, curl, git and python3. Loopback only; bounded (PAIRS x 2
# runs of SECS); stops by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rev=${1:?usage: bench/build-pair.sh REV [SIZE] [PAIRS] [MODE]}
size=${2:-100k}
pairs=${3:-6}
mode=${4:-hit}
conns=${CONNS:-64}
secs=${SECS:-5}
[[ "$conns" =~ ^[1-9][0-9]*$ ]] || { echo "CONNS: a positive number of connections" >&2; exit 2; }
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "SECS: a positive number of seconds" >&2; exit 2; }
case "$size" in 1k) bytes=1024 ;; 32k) bytes=32768 ;; 100k) bytes=102400 ;;
    256k) bytes=262144 ;; 1m) bytes=1048576 ;; *) echo "SIZE: 1k, 32k, 100k, 256k or 1m" >&2; exit 2 ;; esac
case "$mode" in hit | miss) ;; *) echo "MODE: hit or miss" >&2; exit 2 ;; esac
git rev-parse --verify --quiet "$rev^{commit}" > /dev/null || { echo "REV: no such revision: $rev" >&2; exit 2; }
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

source bench/pair-servers.sh
one_object() { mkdir -p "$1/obj" && head -c "$bytes" /dev/urandom > "$1/obj/$size.bin"; }
pair_origin_start buildpair 28800 one_object
trap 'pair_servers_stop; git worktree prune' EXIT   # also forgets a worktree a failed build left

# The baseline first, in a worktree that is removed again at once; then the working tree.
git worktree add --quiet --detach "$dir/base-src" "$rev"
(cd "$dir/base-src" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
cp "$target/release/httpcache-proxy" "$dir/a.bin"
git worktree remove --force "$dir/base-src"
CARGO_TARGET_DIR="$target" cargo build --release --quiet
cp "$target/release/httpcache-proxy" "$dir/b.bin"

declare -A pid port=([a]=28801 [b]=28802)
for s in a b; do
    taskset -c 0 "$dir/$s.bin" 60 --port "${port[$s]}" --upstream-port "$origin_port" \
        --cache-dir "$dir/cache-$s" > "$dir/$s.log" 2>&1 & pid[$s]=$!; pair_pids+=("${pid[$s]}")
done
url() { echo "http://127.0.0.1:${port[$1]}/127.0.0.1:$origin_port/obj/$size.bin"; }
for s in a b; do
    up=
    for _ in $(seq 300); do
        if curl -s -o /dev/null -f "$(url $s)"; then up=1; break; fi
        sleep 0.1
    done
    [ -n "$up" ] || { echo "build $s not ready after 30 s:" >&2; tail -5 "$dir/$s.log" >&2; exit 1; }
    curl -s -o /dev/null "$(url $s)"   # a hit now, so the first run measures hits
done

# wrk's Lua: a new URL per request in miss mode; percentiles for the summary either way.
{
    if [ "$mode" = miss ]; then
        cat <<'LUA'
local n = 0
local nonce = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
request = function()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?miss=" .. nonce .. "-" .. n)
end
LUA
    fi
    cat <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %.3f\n", summary.requests, latency:percentile(99) / 1000))
end
LUA
} > "$dir/load.lua"

run() { # build -> "requests cpu_ticks p99_ms"
    local t0 t1 out
    t0=$(ticks "${pid[$1]}")
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"$secs"s -s "$dir/load.lua" "$(url "$1")")
    t1=$(ticks "${pid[$1]}")
    awk -v t=$((t1 - t0)) '/^RESULT/ { print $2, t, $3 }' <<< "$out"
}
echo "A = $rev, B = the working tree; $mode, $size, wrk -c$conns $secs s per run"
for i in $(seq "$pairs"); do
    if ((i % 2)); then ra=$(run a); rb=$(run b); else rb=$(run b); ra=$(run a); fi
    echo "$i $ra $rb"
done | python3 -c '
import statistics, sys
hz, secs = int(sys.argv[1]), int(sys.argv[2]); rate, cpu = [], []
for line in sys.stdin:
    i, na, ta, pa, nb, tb, pb = line.split()
    na, ta, nb, tb = int(na), int(ta), int(nb), int(tb)
    ua, ub = ta * 1e6 / hz / na, tb * 1e6 / hz / nb
    rate.append(nb / na); cpu.append(ub / ua)
    print(f"pair {i}: A {na / secs:9,.0f}/s {ua:7.1f} us/req p99 {float(pa):6.2f} ms   "
          f"B {nb / secs:9,.0f}/s {ub:7.1f} us/req p99 {float(pb):6.2f} ms   "
          f"B/A rate {nb / na:.3f}x cpu {ub / ua:.3f}x")
print(f"B/A over {len(rate)} pairs: rate median {statistics.median(rate):.3f}x "
      f"(range {min(rate):.3f}-{max(rate):.3f}), CPU per request median "
      f"{statistics.median(cpu):.3f}x (range {min(cpu):.3f}-{max(cpu):.3f})")
' "$(getconf CLK_TCK)" "$secs"
