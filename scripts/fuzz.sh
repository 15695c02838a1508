#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (default 30 s each), from the seeds
# in fuzz/seeds/<target>/, on a stable toolchain (--sanitizer none). Installs cargo-fuzz when missing; if that
# is not possible, says so and exits 0 (the corpus replay in `cargo test` still runs).
# A crash fails the run; cargo-fuzz leaves the input in fuzz/artifacts/<target>/ (ignored);
# once fixed, copy it to fuzz/regressions/<target>/, which tests/fuzz_corpus.rs replays.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  if ! cargo install --locked cargo-fuzz >/dev/null 2>&1; then
    echo "== cargo-fuzz not installable here: skipping the fuzz runs"
    exit 0
  fi
fi
cd fuzz
# Runs start from a scratch copy of the seeds, so new corpus entries do not land in the repo
# (a plain `cargo fuzz run` grows fuzz/corpus/, which is ignored).
work=$(mktemp -d /tmp/httpcache-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$work/$target"
  cp seeds/"$target"/* "$work/$target"/
  echo "== fuzz $target (${secs} s)"
  rc=0
  cargo fuzz run "$target" --sanitizer none "$work/$target" -- -max_total_time="$secs" -rss_limit_mb=1024 \
    >"$work/$target.log" 2>&1 || rc=$?
  grep -E 'DONE|^Done [0-9]+ runs|panicked|ERROR|SUMMARY|crash-' "$work/$target.log" | tail -5 || true
  if [ "$rc" -ne 0 ]; then
    tail -30 "$work/$target.log"
    exit "$rc"
  fi
done
