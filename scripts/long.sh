#!/usr/bin/env bash
# The long suite, by hand (not in CI): what takes too long for scripts/test.sh.
#
#   scripts/long.sh            # everything below, about 60 minutes on 2 cores
#   scripts/long.sh crash      # one part: crash | bounded | outage | fuzz
#
# - crash:   the crash loop, 100 seeded runs (WALSTREAM_CRASH_RUNS, WALSTREAM_CRASH_SEED)
# - bounded: 10 minutes of steady writes with shortened history settings; the replica's object
#            count and bytes stay within ±20 % from minute 5 on (WALSTREAM_BOUNDED_SECS)
# - outage:  a 60 s S3 outage through the fault proxy before moto: the WAL stays bounded and
#            replication catches up
# - fuzz:    every cargo-fuzz target for 600 s (scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
parts=("${@:-crash bounded outage fuzz}")
parts=(${parts[*]})

export WALSTREAM_CRASH_RUNS="${WALSTREAM_CRASH_RUNS:-100}"
source scripts/servers/lib.sh
trap servers_stop_all EXIT

for part in "${parts[@]}"; do
  case "$part" in
    crash) cargo test -p walstream --test tests it::crash::crash_loop -- --ignored --nocapture ;;
    bounded) cargo test -p walstream --test tests it::history::history_bounded_storage_long -- --ignored --nocapture ;;
    outage)
      source scripts/servers/moto.sh
      cargo test -p walstream --test tests faults_s3_long_outage -- --ignored --nocapture ;;
    fuzz) scripts/fuzz.sh ;;
    *) echo "scripts/long.sh: unknown part $part (crash | bounded | outage | fuzz)" >&2; exit 2 ;;
  esac
done
