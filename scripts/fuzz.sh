#!/usr/bin/env bash
# Time-bounded fuzzing of every kflip fuzz target, on the stable toolchain.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Runs each target (default: all of them, one after another) for the given
# time (default 60 s) with `cargo fuzz run -s none`: no sanitizer, which is
# what lets cargo-fuzz build on stable (its default, AddressSanitizer, needs
# nightly's -Zsanitizer). Installs cargo-fuzz if it is missing.
#
# Each target starts from its committed corpus, fuzz/corpus/<target>/, and
# writes what it finds to a working corpus under the target dir, so the
# committed one stays small. KFLIP_FUZZ_MERGE=1 merges inputs of new
# coverage back into fuzz/corpus/<target>/ afterwards. Crashes land in
# fuzz/artifacts/<target>/; replay one with
#   KFLIP_FUZZ_TARGET=<target> KFLIP_FUZZ_INPUT=<file> cargo test --test fuzz_corpora
# Logs go to $CARGO_TARGET_DIR/fuzz-logs/<target>.log. Exits non-zero if a
# target failed.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/kflip/target-fuzz),
# KFLIP_FUZZ_NICE (default 19), KFLIP_FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

seconds=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
all=(frame_header request fetch_stream response_rewrite config)
targets=("${@:-${all[@]}}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kflip/target-fuzz}
nice_level=${KFLIP_FUZZ_NICE:-19}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

logs=$CARGO_TARGET_DIR/fuzz-logs
mkdir -p "$logs"
cd "$root/fuzz"
nice -n "$nice_level" cargo fuzz build -s none
failed=()
for t in "${targets[@]}"; do
    work=$CARGO_TARGET_DIR/fuzz-corpus/$t
    mkdir -p "$work" "corpus/$t"
    echo "== $t: ${seconds}s, log $logs/$t.log"
    # -rss_limit_mb bounds memory; -timeout flags a slow input (a hang);
    # the allocation budget of each input is checked by fuzz/src/lib.rs.
    # shellcheck disable=SC2086
    if nice -n "$nice_level" cargo fuzz run -s none "$t" "$work" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 ${KFLIP_FUZZ_ARGS:-} >"$logs/$t.log" 2>&1; then
        echo "   ok: $(grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$logs/$t.log" | tail -2 | tr '\n' ' ')"
    else
        echo "   FAILED, see $logs/$t.log and fuzz/artifacts/$t/"
        failed+=("$t")
    fi
    if [ "${KFLIP_FUZZ_MERGE:-0}" = 1 ]; then
        nice -n "$nice_level" cargo fuzz run -s none "$t" "corpus/$t" "$work" -- \
            -merge=1 >>"$logs/$t.log" 2>&1
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
