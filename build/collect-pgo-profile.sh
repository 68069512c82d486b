#!/usr/bin/env bash
# Writes build/pgo/tern.profdata (and build/pgo/llvm-major): what a running Tern executes,
# counted, which build/pgo/rustc-wrapper.sh hands to the compiler for release builds
# (profile-guided optimisation).
#
#   bash build/collect-pgo-profile.sh
#
# Why: with the counts, LLVM lays out each function's hot path straight, inlines where
# calls are frequent and keeps rare code out of the way; a login and a relayed message
# cost about 6 % and 4 % less CPU, side by side (docs/benchmarks/README.md,
# "Profile-guided optimisation").
#
# How: builds tern instrumented (-Cprofile-generate, in target/pgo-instrumented, without
# the current profile), builds tern-load, runs the benchmark's standard small run
# (bench/run.sh: start-up, idle connections, logins, messages, XEP-0215 services and
# credentials) against it, merges what the server wrote at its exit with the toolchain's
# llvm-profdata (`rustup component add llvm-tools`, done here when missing) into a sparse
# profile (functions that never ran are left out, so they are compiled as without a
# profile), and records the LLVM major version that wrote it. Then removes the release
# artifacts (`cargo clean --release`): cargo does not know what the wrapper adds, and
# dependencies built with the old profile would otherwise stay. Afterwards rerun
# build/collect-code-layout.sh, whose list of functions comes from the optimised binary.
# Takes about ten minutes on two cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HOST="$(rustc -vV | sed -n 's/^host: //p')"
LLVM_MAJOR="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  rustup component add llvm-tools >/dev/null
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-pgo.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
INSTRUMENTED_DIR="$TARGET_DIR/pgo-instrumented"
TERN_PGO=off RUSTFLAGS="-Cprofile-generate=$WORK/raw" CARGO_TARGET_DIR="$INSTRUMENTED_DIR" \
  cargo build --release --quiet --bin tern
cargo build --release --quiet --bin tern-load

# The server writes its counts when it exits (bench/run.sh stops it with SIGTERM, which
# Tern answers with an orderly shutdown); %p keeps the warm-up server's apart. Only the
# servers' counts are kept: the `tern adduser` runs that create the accounts write theirs
# into $WORK/raw, and their password hashing would outweigh everything a server does.
BENCH_QUIET_WAIT=0 TERN_WRAP="env LLVM_PROFILE_FILE=$WORK/server/tern-%p.profraw" \
  TERN_BIN="$INSTRUMENTED_DIR/release/tern" TERN_LOAD_BIN="$TARGET_DIR/release/tern-load" \
  BENCH_OUT="$WORK/results" bash bench/run.sh

shopt -s nullglob
raw=("$WORK"/server/*.profraw)
if [ "${#raw[@]}" = 0 ]; then
  echo "no profile was written: did the server exit normally?" >&2
  exit 1
fi
"$PROFDATA" merge --sparse -o "$ROOT/build/pgo/tern.profdata" "${raw[@]}"
echo "$LLVM_MAJOR" >"$ROOT/build/pgo/llvm-major"
cargo clean --release --quiet
echo "build/pgo/tern.profdata: ${#raw[@]} profiles merged, LLVM $LLVM_MAJOR" >&2
