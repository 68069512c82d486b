#!/usr/bin/env bash
# Smoke run of bench/floor's TLS floors (debug build, tiny counts): proves the server and
# the three clients still work together and print their JSON lines; measures nothing.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --quiet
# Wherever cargo puts it (CARGO_TARGET_DIR may point elsewhere).
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
FLOOR="$TARGET_DIR/debug/tern-bench-floor"
LOG="$(mktemp)"
"$FLOOR" tls-server >/dev/null 2>"$LOG" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -f "$LOG"' EXIT
for port in 27003 27004 27005; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
if ! kill -0 "$SERVER" 2>/dev/null; then
  echo "floor smoke: the floor's tls-server exited at start-up:" >&2
  cat "$LOG" >&2
  exit 1
fi
check() {
  python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert r["scenario"] == sys.argv[1], r
assert r["operations"] == int(sys.argv[2]), r
assert isinstance(r["cpu_us_per_op"], (int, float)), r
print("floor smoke:", r["scenario"], r["operations"], "operations")' "$@"
}
"$FLOOR" tls-logins "$SERVER" 20 10 | check logins 10
"$FLOOR" tls-messages "$SERVER" 100 40 4 | check messages 40
"$FLOOR" tls-requests "$SERVER" 50 20 4 | check requests 20
