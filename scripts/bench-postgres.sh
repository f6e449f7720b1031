#!/usr/bin/env bash
# W1 into a throwaway PostgreSQL cluster: starts one (initdb in a temporary directory,
# loopback port, fsync off), runs `dynashift bench --postgres-url`, stops it.
# Extra arguments go to `dynashift bench` (e.g. --records 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
# The same build directory as `cargo run` unless told otherwise (CI keeps it outside the clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The same build as the tests (one feature set, so nothing is compiled twice).
cargo build --release --workspace --all-targets --all-features
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
dir="$(mktemp -d /tmp/dynashift-bench-pg.XXXXXX)"
chmod 755 "$dir"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=55432
as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
  "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=1GB -c max_wal_size=8GB -c wal_init_zero=off" start >/dev/null
trap 'as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$CARGO_TARGET_DIR/release/dynashift" bench --postgres-url "host=127.0.0.1 port=$port user=postgres dbname=postgres" "$@"
