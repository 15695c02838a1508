#!/usr/bin/env bash
# Soak: tests/soak.rs at full size: 2 minutes, 1,000 keep-alive connections mixing cache hits,
# misses, a slow origin, large bodies read slowly and clients aborting mid-request and
# mid-response. Prints requests/s, errors, latency percentiles, and the proxy's fd count and
# RSS after warm-up and at the end; fails on any error or fd growth.
#   bench/soak.sh [SECONDS] [CONNECTIONS]     (defaults 120 and 1000)
# Uses the debug build (`cargo test`), like the rest of the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
SOAK_SECS="${1:-120}" SOAK_CONNS="${2:-1000}" \
  cargo test --locked --test soak -- --nocapture 2>&1 | grep -E '^soak:|panicked|test result|errors, first'
