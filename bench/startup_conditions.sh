#!/usr/bin/env bash
# Tern's start-up under four conditions, to tell a slow start-up's causes apart: its binary
# in the page cache ("warm") or dropped from it ("cold": posix_fadvise DONTNEED, as a
# proactive pageout such as DAMON's leaves a program that has not run for a while), and
# the disk "quiet" or "busy" (3 GB written just before and `sync` started 0.3 s before
# exec, so the start-up's reads and fsyncs queue behind the writeback). Each start-up is a
# `tern-load startup` (exec to first login); one line each:
#
#   condition  first login ms  on CPU ms  major faults  read KiB  disk wait ms  backlog MiB
#
#   bench/startup_conditions.sh [ROUNDS]     # default 3 rounds of the four
#
# Needs release builds (`cargo build --release --bins`), python3 and openssl, about 4 GB of
# free disk beside the work folder, and root for the disk wait column (the kernel's delay
# accounting, turned on for the run and back off after). Results: docs/benchmarks/README.md,
# "Slow start-ups" (session 24).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
ROUNDS="${1:-3}"
TERN_BIN="${TERN_BIN:-$ROOT/target/release/tern}"
TERN_LOAD_BIN="${TERN_LOAD_BIN:-$ROOT/target/release/tern-load}"
for bin in "$TERN_BIN" "$TERN_LOAD_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin: run cargo build --release --bins" >&2; exit 1; }
done
# shellcheck source=bench/peers/lib.sh
. "$HERE/peers/lib.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-startup-conditions.XXXXXX")"
BIG="$WORK/backlog.bin"
finish() {
  rm -rf "$WORK"
  delay_accounting_back
}
trap finish EXIT
delay_accounting_on

read -r PORT < <(free_ports 1)
peer_cert "$WORK/cert" localhost
export PEER_DIR="$WORK/tern" PEER_PORT="$PORT" PEER_DOMAIN=localhost PEER_USERS=10
export PEER_PASSWORD=pw PEER_TURN_HOST=turn.example.org PEER_TURN_SECRET=not-a-secret
export PEER_CERT="$WORK/cert/localhost.crt" PEER_KEY="$WORK/cert/localhost.key" TERN_BIN
"$HERE/peers/tern.sh" prepare
mapfile -t cmd < <("$HERE/peers/tern.sh" command)

drop_from_cache() {
  python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$1"
}

printf '%s\n' "condition	first_login_ms	on_cpu_ms	major_faults	read_kib	disk_wait_ms	backlog_mib"
for _ in $(seq 1 "$ROUNDS"); do
  for condition in cold-quiet warm-quiet cold-busy warm-busy; do
    sync
    case "$condition" in *busy) dd if=/dev/zero of="$BIG" bs=1M count=3000 status=none ;; esac
    case "$condition" in cold*) drop_from_cache "$TERN_BIN" ;; esac
    sync_pid=""
    case "$condition" in *busy) sync & sync_pid=$! ; sleep 0.3 ;; esac
    "$TERN_LOAD_BIN" startup --addr "127.0.0.1:$PORT" --users 1 --idle 1 --timeout 60 \
      --password pw --ca "$PEER_CERT" --key-cache "$WORK/scram-keys.json" \
      --server-log "$WORK/server.log" -- taskset -c 0 "${cmd[@]}" >"$WORK/startup.json" 2>"$WORK/startup.err" ||
      { echo "$condition: tern-load startup failed: $(tail -n 3 "$WORK/startup.err")" >&2; exit 1; }
    [ -n "$sync_pid" ] && wait "$sync_pid"
    rm -f "$BIG"
    python3 - "$condition" "$WORK/startup.json" <<'PY'
import json, sys
condition, path = sys.argv[1], sys.argv[2]
report = json.load(open(path))
waits = report.get("waits_to_first_login", {})
server = waits.get("server", {})
backlog = waits.get("write_backlog_at_exec", {})
wait = server.get("waiting_on_disk_ms")
star = "*" if server.get("implausible_disk_waits") else ""
print("\t".join(str(v) for v in [
    condition, report.get("first_login_ms"), server.get("on_cpu_ms"), server.get("major_faults"),
    server.get("read_from_disk_kib"), f"{wait}{star}" if wait is not None else "-",
    round(backlog.get("dirty_mib", 0) + backlog.get("writeback_mib", 0), 1),
]))
PY
  done
done
