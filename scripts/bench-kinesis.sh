#!/usr/bin/env bash
# W1 read from a four-shard Kinesis stream: starts kinesalite on a loopback port (installed
# by scripts/test.sh into ~/.cache/dynashift/node), runs `dynashift bench --kinesis-endpoint`
# into DuckDB, stops kinesalite. Extra arguments go to `dynashift bench`; the default size is
# 100,000 records, since kinesalite keeps every record in memory.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same build directory as `cargo run` unless told otherwise (CI keeps it outside the clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The same build as the tests (one feature set, so nothing is compiled twice).
cargo build --release --workspace --all-targets --all-features
modules="${DYNASHIFT_NODE_MODULES:-$HOME/.cache/dynashift/node/node_modules}"
[ -d "$modules/kinesalite" ] || { echo "kinesalite not found in $modules: run scripts/test.sh first" >&2; exit 1; }
port=54567
NODE_PATH="$modules" node -e "require('kinesalite')({createStreamMs: 0, shardLimit: 100}).listen($port, '127.0.0.1')" &
kinesalite=$!
trap 'kill $kinesalite 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-bench}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-bench}"
"$CARGO_TARGET_DIR/release/dynashift" bench --kinesis-endpoint "http://127.0.0.1:$port" --records 100000 --keys 20000 "$@"
