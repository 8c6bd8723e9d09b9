#!/usr/bin/env bash
# The safety suite (issue 5) with one summary line.
#
#   scripts/safety.sh          # short: crash loop 8 runs, 8 s S3 outage, corrupt replicas,
#                              # secrets, interference (a few minutes; the same tests run in CI)
#   scripts/safety.sh long     # long: crash loop 100 runs, plus the 60 s S3 outage (~25 min)
#
# Starts moto on 127.0.0.1 (scripts/servers/moto.sh) and stops it by pid. Output of every part
# goes to target/safety/<part>.log; the last line is
#   safety: runs=.. kills=.. faults_injected=.. corrupt_inputs=.. secret_runs=.. leaks=.. data_lost=0 corrupt_restores=0
# Fuzzing is separate: scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode="${1:-short}"
logs=target/safety
mkdir -p "$logs"

source scripts/servers/lib.sh
trap servers_stop_all EXIT
source scripts/servers/moto.sh

# t FILTER [test-binary args...]
t() { local f="$1"; shift; cargo test -q -p walstream --test tests "$f" -- --nocapture --test-threads 1 "$@"; }
status=0
if [ "$mode" = long ]; then
  WALSTREAM_CRASH_RUNS="${WALSTREAM_CRASH_RUNS:-100}" t it::crash::crash_loop --ignored >"$logs/crash.log" 2>&1 || status=1
  t faults_s3_long_outage --ignored >"$logs/outage.log" 2>&1 || status=1
else
  WALSTREAM_CRASH_RUNS="${WALSTREAM_CRASH_RUNS:-8}" t it::crash::crash_loop --ignored >"$logs/crash.log" 2>&1 || status=1
  t faults_s3_outage_wal_bounded >"$logs/outage.log" 2>&1 || status=1
fi
t faults_s3_proxy_during_replication >"$logs/faults.log" 2>&1 || status=1
t it::corrupt_replica >"$logs/corrupt.log" 2>&1 || status=1
t it::security >"$logs/security.log" 2>&1 || status=1
t it::interference >"$logs/interference.log" 2>&1 || status=1
t it::restore_fallback >"$logs/fallback.log" 2>&1 || status=1

field() { grep -ho "$1=[0-9]*" "$2" 2>/dev/null | tail -1 | cut -d= -f2; }
crash=$(grep -h '^crash loop: runs=' "$logs/crash.log" | tail -1 || true)
faults=$(grep -hoE '(SlowDown|Cut|Drop|Stall)=[0-9]+' "$logs/outage.log" "$logs/faults.log" 2>/dev/null \
  | cut -d= -f2 | awk '{s+=$1} END {print s+0}')
faults=$((faults + $(grep -hoE '[0-9]+ SlowDown, [0-9]+ cut or dropped, [0-9]+ stalled' "$logs/faults.log" 2>/dev/null \
  | grep -oE '^[0-9]+|, [0-9]+' | tr -d ', ' | awk '{s+=$1} END {print s+0}')))
echo "$crash"
grep -h '^corrupt replicas:' "$logs/corrupt.log" | tail -1 || true
grep -h 'secrets: runs=' "$logs/security.log" | tail -1 || true
grep -h '^outage' "$logs/outage.log" | tail -1 || true
grep -h 'tests\? result\|^test result' "$logs"/*.log | sed 's/^/  /' || true
lost=$(( $(echo "$crash" | grep -o 'data_lost=[0-9]*' | cut -d= -f2 || echo 1) ))
torn=$(( $(echo "$crash" | grep -o 'corrupt_restores=[0-9]*' | cut -d= -f2 || echo 1) ))
echo "safety: runs=$(echo "$crash" | grep -o 'runs=[0-9]*' | cut -d= -f2) kills=$(echo "$crash" | grep -o ' kills=[0-9]*' | cut -d= -f2)" \
  "faults_injected=$faults corrupt_inputs=$(field inputs "$logs/corrupt.log") secret_runs=$(field runs "$logs/security.log")" \
  "leaks=$(field leaks "$logs/security.log") data_lost=$lost corrupt_restores=$torn failed_parts=$status"
exit $status
