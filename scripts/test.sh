#!/usr/bin/env bash
# The one test command: checks formatting and lints, builds once (release profile, shared by
# tests, the binary and the benchmark), starts what the tests need, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build cache outside the clone so fresh clones (CI) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dynashift/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (release profile, all targets)"
cargo clippy --release --all-targets -- -D warnings

echo "== tests"
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found; installing it" >&2
  cargo install --locked cargo-nextest
fi
cargo nextest run --release --workspace --no-fail-fast "$@"
