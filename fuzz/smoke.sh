#!/usr/bin/env bash
# A short fuzz run of every target, for CI: finds crashes that new code makes easy to
# reach, and proves the targets still build. Not a substitute for the long runs recorded
# in docs/security.md.
#
#   bash fuzz/smoke.sh              # FUZZ_SECONDS (default 20) per target
#
# Installs cargo-fuzz when missing (about a minute on a 2-core machine; the fuzz build
# of tern with AddressSanitizer then takes about 6 minutes, the runs 6 x FUZZ_SECONDS).
# Runs on the stable toolchain: cargo-fuzz passes nightly-only flags, which
# RUSTC_BOOTSTRAP=1 allows. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

targets=(framer framer_fast_path sasl jid extdisco_codec config tls_records)
# One build for all targets, so the per-target time below is fuzzing time.
cargo fuzz build
failed=0
for target in "${targets[@]}"; do
    extra=()
    if [ "$target" = framer ] || [ "$target" = framer_fast_path ]; then
        extra=(-max_len=16384)
    fi
    mkdir -p "$work/$target"
    # New inputs go to the scratch folder; the committed seeds are only read.
    if cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" "${extra[@]}" >"$work/$target.log" 2>&1; then
        summary="$(grep -E '^#[0-9]+.*DONE' "$work/$target.log" | tail -1 || true)"
        echo "fuzz $target: ${seconds}s, no finding ${summary:+($summary)}"
    else
        failed=1
        echo "fuzz $target: FAILED (see the log below; the input is under fuzz/artifacts/$target/)"
        tail -40 "$work/$target.log"
    fi
done
exit "$failed"
