#!/usr/bin/env bash
# Crash soak: tests/faults.rs `repeated_kills_under_mixed_load_never_serve_a_wrong_byte` at full
# size. 16 clients on a skewed mix of 400 objects (200 B to 1.5 MB, a third revalidated every
# second, some answered after a pause, some sent chunked in slow pieces), tiny tiers so
# eviction and reclaim never rest, and a SIGKILL at a random moment in the second half of every
# cycle, then a restart on the same directory.
# Every complete-looking answer must be the origin's exact bytes; at the end every object is
# fetched once and SIGTERM must exit 0. Prints one line per cycle.
#   bench/crash-soak.sh [CYCLES] [SECONDS]     (defaults 20 and 6; CI runs 2 of 1.5 s)
# Uses the debug build (`cargo test`), like the rest of the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CRASH_SOAK_CYCLES="${1:-20}" CRASH_SOAK_SECS="${2:-6}" \
  cargo test --locked --test faults repeated_kills_under_mixed_load -- --nocapture 2>&1 \
  | grep -E '^crash soak:|panicked|test result'
