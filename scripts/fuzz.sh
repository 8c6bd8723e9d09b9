#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for a fixed time.
#
#   scripts/fuzz.sh                     # every target, 600 s each
#   scripts/fuzz.sh 60                  # every target, 60 s each
#   scripts/fuzz.sh 600 wal_reader      # one target (or several, space-separated)
#   FUZZ_JOBS=2 scripts/fuzz.sh         # parallel libFuzzer jobs per target (default 1)
#
# With one job libFuzzer fuzzes in-process (the same as -jobs=1, but it prints here rather than
# to fuzz-0.log). Limits: -timeout=10 s per input, -rss_limit_mb=2048, and -malloc_limit_mb=256:
# no input may make the code allocate 256 MiB at once (a header claiming a huge page size or
# count must not turn into an allocation).
#
# Targets: ltx_decode (LTX decoder incl. legacy LZ4 frames, page index, header/trailer, re-encode),
# ltx_compact (Compactor over concatenated LTX files), wal_reader (WAL read_header/scan/resume,
# also over checksum-repaired bytes against a model), config (YAML config with $VAR expansion
# and validation). Each target calls one function of ltx::fuzzing or walstream::fuzzing.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz needs nightly features: on the stable
# toolchain this script sets RUSTC_BOOTSTRAP=1. Builds go to fuzz/target (gitignored), apart from
# the workspace's target/. Runs under `nice -n 19`: the machine is shared.
#
# Each run starts from the committed seeds (fuzz/corpus/<target>) plus the regression inputs
# (fuzz/regressions/<target>) and grows a scratch corpus in fuzz/corpus-run/<target>
# (gitignored). A crash, panic, timeout or OOM stops that target's run and leaves the input in
# fuzz/artifacts/<target>/; the script then goes on with the next target and exits non-zero.
# To pin a bug: minimize it (`cargo fuzz tmin <target> <artifact>`), copy it into
# fuzz/regressions/<target>/, fix the library, and add a unit test named after the bug; the
# replay tests (`cargo test -p ltx fuzzing`, `cargo test -p walstream --lib fuzzing`) run every
# corpus and regression file through the same entry functions without libFuzzer.
#
# libFuzzer prints `#<execs> ... cov: <edges> ft: <features> corp: <n>/<size>` lines; the last
# `DONE` line of each log in fuzz/logs/<target>.log gives the totals.
set -euo pipefail

SECS=${1:-600}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(ltx_decode ltx_compact wal_reader config)
fi
JOBS=${FUZZ_JOBS:-1}

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

# Largest input per target: LTX files of a few pages; WALs large enough to cross the reader's
# 256 KiB chunk; configs of a few KiB.
max_len() {
    case "$1" in
        wal_reader) echo 300000 ;;
        config) echo 8192 ;;
        *) echo 65536 ;;
    esac
}

mkdir -p logs
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus-run/$t" "regressions/$t" "artifacts/$t"
    echo "== $t: ${SECS}s" >&2
    jobs=()
    if [ "$JOBS" -gt 1 ]; then
        jobs=(-jobs="$JOBS" -workers="$JOBS")
    fi
    if ! nice -n 19 cargo fuzz run "$t" "corpus-run/$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$SECS" "${jobs[@]}" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 2>&1 | tee "logs/$t.log"; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
