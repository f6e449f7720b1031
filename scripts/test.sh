#!/usr/bin/env bash
# The one test command: checks formatting and lints, builds once (release profile, shared by
# tests, the binary and the benchmark), starts what the tests need, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build cache outside the clone so fresh clones (CI) build incrementally.
# The same build directory as `cargo run` unless told otherwise (CI keeps it outside the clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

# Every feature at once (the embedded DuckDB, the benchmark, test support): one build serves
# lints, tests and the benchmark scripts, so nothing is compiled twice.
echo "== cargo clippy (release profile, all targets, all features)"
cargo clippy --release --workspace --all-targets --all-features -- -D warnings

echo "== test services"
# PostgreSQL server binaries: the tests start throwaway clusters with initdb and pg_ctl.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found; installing the Debian package postgresql" >&2
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get update -qq && DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq postgresql >/dev/null
fi
ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1
# moto server: the S3 (and DynamoDB) API the tests talk to on loopback.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "moto_server not found; installing moto[server] from PyPI" >&2
  python3 -m pip install --quiet 'moto[server]'
fi
command -v moto_server
# kinesalite: the Kinesis stand-in, installed once into the cache with npm.
node_dir="$HOME/.cache/dynashift/node"
if [ ! -d "$node_dir/node_modules/kinesalite" ]; then
  echo "kinesalite not found; installing it with npm into $node_dir" >&2
  mkdir -p "$node_dir"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund kinesalite@3)
fi
export DYNASHIFT_NODE_MODULES="$node_dir/node_modules"
echo "kinesalite $(node -e "console.log(require('$node_dir/node_modules/kinesalite/package.json').version)")"

echo "== tests"
# Property tests: 256 cases each (tests against a server run a sixteenth of that); a longer,
# nightly-style run sets more, e.g. PROPTEST_CASES=4096.
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found; installing it" >&2
  cargo install --locked cargo-nextest
fi
cargo nextest run --release --workspace --all-features --no-fail-fast "$@"
