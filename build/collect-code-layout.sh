#!/usr/bin/env bash
# Writes build/code-layout.txt: the functions a running Tern executes, hottest first, which
# build.rs hands to the linker (--symbol-ordering-file) for the release `tern` binary.
#
#   bash build/collect-code-layout.sh
#
# Why: the kernel maps a binary's code 64 KiB at a time around each page it faults in, so
# a few hundred functions scattered over 4.7 MB of code made nearly all of it resident.
# Packed together, they fill about 2 MB (docs/benchmarks/README.md, "Idle RSS: code
# layout, ...").
#
# How: builds release tern and tern-load, runs the benchmark smoke run (bench/run.sh
# --smoke: start-up, idle connections, logins, messages, XEP-0215 services and
# credentials) with the server under callgrind, and lists every function of the tern
# binary that ran, by instructions executed (most first). Functions that ring picks by CPU
# feature at run time (AES-NI, MULX/ADX, SHA extensions) do not run under valgrind, whose
# CPU lacks some of those features, so all of ring's assembly follows the list.
#
# The file names symbols as the compiler mangles them; they stay valid while the
# toolchain, Cargo.lock and a function's path stay the same. Stale names are ignored by
# the linker, so an old file costs nothing but its benefit: rerun this after a toolchain
# or dependency update, and after a new profile (build/collect-pgo-profile.sh), since the
# release build it lists is the profile-optimised one, whose functions differ. Needs valgrind (installed with apt when missing). Takes about
# five minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v valgrind >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
fi

cargo build --release --quiet --bin tern --bin tern-load
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
TERN="$TARGET_DIR/release/tern"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-layout.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# The warm-up server and the measured one each leave a profile (%p: the process id).
TERN_BIN="$TERN" TERN_LOAD_BIN="$TARGET_DIR/release/tern-load" BENCH_OUT="$WORK/results" \
  TERN_WRAP="valgrind --tool=callgrind --demangle=no --callgrind-out-file=$WORK/callgrind.%p" \
  bash bench/run.sh --smoke

python3 - "$TERN" "$ROOT/build/code-layout.txt" "$WORK"/callgrind.* <<'EOF'
import re
import subprocess
import sys

binary, out_path, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
name_of = binary.rsplit("/", 1)[-1]

# Self cost (instructions) per function of the tern binary, over every profile.
cost = {}
for path in profiles:
    objects, functions = {}, {}
    current_object = current = None
    skip_next = False
    with open(path) as profile:
        for line in profile:
            line = line.rstrip("\n")
            if skip_next:  # the line after calls= is the call's inclusive cost
                skip_next = False
                continue
            named = re.match(r"(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line)
            if named:
                kind, ident, name = named.groups()
                table = objects if kind.endswith("ob") else functions
                if name:
                    table[ident] = name
                if kind == "ob":
                    current_object = objects.get(ident, "")
                elif kind == "fn":
                    current = functions.get(ident)
                    if current_object.endswith(name_of):
                        cost.setdefault(current, 0)
                    else:
                        current = None
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if current and line[:1] in "0123456789+-*":
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    cost[current] += int(fields[1])

symbols = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
text = {fields[2] for fields in (l.split() for l in symbols.splitlines())
        if len(fields) == 3 and fields[1] in "tT"}
# Callgrind marks recursion levels ('2) and clones; the linker knows the plain name.
ran = {}
for name, instructions in cost.items():
    plain = re.sub(r"'\d+$", "", name)
    if plain in text:
        ran[plain] = ran.get(plain, 0) + instructions
order = sorted(ran, key=lambda n: (-ran[n], n))
asm = sorted(n for n in text if n not in ran and (n.startswith("ring_core_") or "_nohw" in n
             or n.startswith(("aes", "gcm", "sha", "ecp_nistz256", "bn_", "mulx", "chacha"))))
with open(out_path, "w") as out:
    out.write("\n".join(order + asm) + "\n")
print(f"{out_path}: {len(order)} functions that ran, then {len(asm)} of ring's assembly",
      file=sys.stderr)
EOF
