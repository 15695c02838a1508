#!/usr/bin/env bash
# Runs every check and test of the project, installing what they need first.
# This is the README's test command; CI runs it through .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Toolchain components (rustfmt and clippy ship with rustup's default profile; add them if not).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

# System programs the integration tests drive (Debian packages), installed when missing,
# all in one apt-get run.
missing=()
need() { # need <command> <package>
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need curl curl                      # tests/modes.rs: a real client through -x and HTTPS_PROXY
need chromium chromium              # tests/dashboard.rs: the dashboard in a real browser
need chromedriver chromium-driver   # ... driven over WebDriver
need redis-server redis-server      # tests/shared_cache.rs: standalone Redis and a Redis Cluster
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (for the tests)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== format"
cargo fmt --all -- --check

echo "== lint (also type-checks tests and examples)"
cargo clippy --all-targets --locked -- -D warnings

echo "== tests (unit, integration, examples build)"
# One debug build serves clippy's dependencies, the tests and the examples.
cargo test --all-targets --locked

echo "== the end-to-end suites again with every proxy on one worker (current-thread scheduler)"
# The default on one CPU (as in the benchmarks); this machine has more, so the run above used
# the work-stealing pool. Same build: nothing is compiled again.
HTTPCACHE_TEST_WORKERS=1 cargo test --locked --test core --test faults --test rfc9111 --test modes

echo "== fuzz (each target for a bounded time; SKIP_FUZZ=1 skips)"
[ "${SKIP_FUZZ:-0}" = 1 ] || ./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
