#!/usr/bin/env bash
# Tern side by side with Prosody 0.12 and ejabberd 23.01: the same tern-load scenarios,
# the same rates, the same certificate and accounts, one server at a time.
#
#   bench/compare.sh              # the full comparison (about 20 minutes), results in
#                                 # docs/benchmarks/<UTC time>/ (JSON + README.md + SVG)
#   bench/compare.sh --scale      # also everything again with 10k connected users (long)
#   bench/compare.sh --smoke      # tiny sizes, 1 repetition: tests the plumbing only
#   bench/run.sh --peers [...]    # the same (run.sh hands over to this script)
#
# Options: --servers tern,prosody,ejabberd (which, in that order); --reps N (repetitions of
# the cheap scenarios, default 3; the report takes medians); --out DIR; --scale; --smoke.
# Environment: TERN_BIN / TERN_LOAD_BIN (no build), BENCH_QUIET_WAIT (seconds to wait for
# other rustc processes, default 600), BENCH_SERVER_CPU / BENCH_GEN_CPU (0 / 1),
# BENCH_KEEP=1 (keep the work folder with every server's log), EJABBERD_ERL_FLAGS (extra
# Erlang VM flags for ejabberd; default "+sbwt none +sbwtdcpu none +sbwtdio none", the
# schedulers' busy wait off: see bench/peers/ejabberd.sh; "" keeps the VM's default).
#
# Set-up, per server: `bench/peers/<server>.sh prepare` writes its config (bench/peers/*.in;
# Tern's from bench/lib/tern-config.sh) in a throwaway folder and creates the accounts; a
# first run (not measured) gives every account a roster of 20 contacts (tern-load rosters:
# jabber:iq:roster sets from the clients) and fills tern-load's SCRAM key cache. Then,
# repetition by repetition, each repetition going round the servers in a rotated order (so
# that a slow spell of this shared machine weighs on all of them alike):
#   startup        tern-load execs the server, time to the first login, 10 s idle
#   rounds         on a fresh server: LEVEL idle connections held by a second tern-load
#                  (memory per connection), and on top of them logins, messages and
#                  XEP-0215 services / credentials requests at fixed rates, and XEP-0199
#                  pings at the same rate (the smallest IQ round trip: the reference
#                  that splits a request's cost from the XEP-0215 work); after the
#                  servers, the floor (bench/floor, `tls-*`): a TLS 1.3 server that does no
#                  XMPP at all, at the same rates, what any server pays on this machine for
#                  a login's round trips and handshake, a relayed message, a request and
#                  its reply; the report sets each goal's budget against it (--no-floor
#                  leaves it out; FLOOR_BIN: no build)
# and last, one server after the other:
#   max rates      logins and messages at rising rates until one fails its criterion,
#                  then messages at half the highest good rate (latency percentiles)
# LEVEL is 1000 connected users; with --scale also 10000, in every repetition right after
# the 1000 (a slow spell of the machine then weighs on both levels alike). The server is
# pinned to CPU 0, the generators to CPU 1. Every tern-load report goes into
# OUT/<server>.json; bench/peers/report.py turns the folder into README.md and SVG plots
# (deterministically: run it again on the JSON to regenerate).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COMMAND="bench/compare.sh${*:+ $*}"
# shellcheck source-path=SCRIPTDIR source=peers/lib.sh
. "$HERE/peers/lib.sh"

SMOKE=0
SCALE=0
REPS=3
SERVERS="tern,prosody,ejabberd"
OUT=""
FLOOR=1
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --scale) SCALE=1 ;;
    --reps) REPS="$2"; shift ;;
    --servers) SERVERS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --peers) ;; # passed through by run.sh
    --no-floor) FLOOR=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------- sizes
# Same for every server. Rates are chosen so that the slowest server stays well below
# one core at the fixed rates (the max-rate searches find the limits).
if [ "$SMOKE" = 1 ]; then
  REPS=1
  LEVELS=(20)
  SCENARIO_USERS=10
  RAMP_RATE=100
  LOGIN_RATE=10; LOGIN_DURATION=1
  PAIRS=4; MSG_RATE=50; MSG_DURATION=1
  EXT_CLIENTS=4; EXT_RATE=20; EXT_DURATION=1
  STARTUP_IDLE=1
  LOGIN_STEPS=(10 20)
  MSG_STEPS=(50 100)
  STEP_DURATION=1
  CONTACTS=4
  OUT="${OUT:-$HERE/results/smoke/peers}"
else
  LEVELS=(1000)
  [ "$SCALE" = 1 ] && LEVELS+=(10000)
  SCENARIO_USERS=200
  RAMP_RATE=200
  LOGIN_RATE=50; LOGIN_DURATION=10
  PAIRS=50; MSG_RATE=1000; MSG_DURATION=10
  EXT_CLIENTS=20; EXT_RATE=200; EXT_DURATION=10
  STARTUP_IDLE=10
  LOGIN_STEPS=(25 50 100 200 400 800 1600)
  MSG_STEPS=(1000 2000 4000 8000 16000 32000)
  STEP_DURATION=5
  CONTACTS=20
  OUT="${OUT:-$ROOT/docs/benchmarks/$(date -u +%Y-%m-%dT%H%MZ)}"
fi
MAX_LEVEL="${LEVELS[${#LEVELS[@]}-1]}"
# Accounts u0..u{SCENARIO_USERS-1} run the scenarios; the held idle connections use the
# accounts after them.
USERS=$((SCENARIO_USERS + MAX_LEVEL))
export PEER_DOMAIN=localhost PEER_PASSWORD=pw PEER_USERS="$USERS"
export PEER_TURN_HOST=turn.example.org PEER_TURN_SECRET=bench-secret-not-for-production

note() { echo "---- $(date -u +%H:%M:%S) $*" >&2; }

# One run at a time on this machine: two at once load each other's measurements (and,
# started in the same minute, write into one folder). A run at 2026-11-27T04:29 was lost
# that way. The lock is held until this script and what it started have exited.
if [ "$SMOKE" = 0 ]; then
  exec 9>"${TMPDIR:-/tmp}/tern-bench-compare.lock"
  if ! flock -n 9; then
    echo "another bench/compare.sh is running on this machine (lock ${TMPDIR:-/tmp}/tern-bench-compare.lock): not starting a second" >&2
    exit 1
  fi
fi

# ---------------------------------------------------------------- build and install
if [ -n "${TERN_BIN:-}" ] && [ -n "${TERN_LOAD_BIN:-}" ]; then
  TERN="$TERN_BIN"; LOAD="$TERN_LOAD_BIN"
else
  note "cargo build --release --bin tern --bin tern-load"
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --quiet --release --bin tern --bin tern-load)
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$ROOT/target")"
  TERN="$TARGET_DIR/release/tern"; LOAD="$TARGET_DIR/release/tern-load"
fi
export TERN_BIN="$TERN"
if [ "$FLOOR" = 1 ]; then
  if [ -n "${FLOOR_BIN:-}" ]; then
    FLOOR_EXE="$FLOOR_BIN"
  else
    note "cargo build --release (bench/floor)"
    (cd "$HERE/floor" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --quiet --release)
    FLOOR_TARGET="$(cd "$HERE/floor" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    FLOOR_EXE="$FLOOR_TARGET/release/tern-bench-floor"
  fi
fi
IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for server in "${SERVER_LIST[@]}"; do
  case "$server" in
    tern) ;;
    prosody) command -v prosody >/dev/null || { note "apt-get install prosody"; apt-get install -y -q prosody >/dev/null; } ;;
    ejabberd) command -v ejabberdctl >/dev/null || { note "apt-get install ejabberd"; apt-get install -y -q ejabberd >/dev/null; } ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- a quiet machine, limits
# Cores the machine spent in processes over 5 s (nothing of this script runs yet): other
# builds and test runs, which make every figure noisy.
busy_cores() {
  python3 - <<'PY'
import time
def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[7]
a = busy(); time.sleep(5); b = busy()
print(f"{(b - a) / 100 / 5:.2f}")
PY
}
BUSY_AT_START=false
if [ "$SMOKE" = 0 ]; then
  waited=0
  busy="$(busy_cores)"
  while python3 -c "import sys; sys.exit(0 if $busy > 0.3 else 1)" && [ "$waited" -lt "${BENCH_QUIET_WAIT:-600}" ]; do
    [ "$waited" = 0 ] && note "the machine is busy ($busy cores): waiting for quiet (at most ${BENCH_QUIET_WAIT:-600} s)"
    sleep 10; waited=$((waited + 15))
    busy="$(busy_cores)"
  done
  if python3 -c "import sys; sys.exit(0 if $busy > 0.3 else 1)"; then
    BUSY_AT_START=true
    note "WARNING: the machine is still busy ($busy cores): figures are noisy (see other_cpu_cores)"
  fi
fi
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
hard="$(ulimit -Hn)"; [ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
NOFILE="$(ulimit -n)"
if [ "$NOFILE" -lt $((MAX_LEVEL + SCENARIO_USERS + 1000)) ]; then
  note "WARNING: ulimit -n $NOFILE is too low for $MAX_LEVEL connections"
fi
PIN_SERVER=(); PIN_GEN=(); PINNING="none"
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_SERVER=(taskset -c "${BENCH_SERVER_CPU:-0}")
  PIN_GEN=(taskset -c "${BENCH_GEN_CPU:-1}")
  PINNING="server on CPU ${BENCH_SERVER_CPU:-0}, generators on CPU ${BENCH_GEN_CPU:-1}"
fi

# ---------------------------------------------------------------- work folder, cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-compare.XXXXXX")"
chmod 0755 "$WORK" # ejabberd runs as its own user and must reach its folder
SERVER_PID=""
HOLDER_PID=""
CURRENT=""
COLLECTED=0
cleanup() {
  local status=$?
  delay_accounting_back
  if [ -n "$HOLDER_PID" ]; then
    # Removing the ready file ends the holder's hold; its tern-load closes and exits.
    rm -f "$PEER_DIR/holder.ready"
    sleep 1
    pkill -TERM -P "$HOLDER_PID" 2>/dev/null || true
    peer_kill "$HOLDER_PID" 5
  fi
  if [ -n "$SERVER_PID" ] && [ -n "$CURRENT" ]; then
    "$HERE/peers/$CURRENT.sh" stop "$SERVER_PID" || true
  fi
  [ -n "${FLOOR_PID:-}" ] && kill "$FLOOR_PID" 2>/dev/null
  # A run that stopped half-way still gets its report, marked incomplete.
  if [ "$COLLECTED" = 0 ] && [ -n "${BENCH_START:-}" ]; then
    BENCH_S=$(($(date +%s) - BENCH_START)) INCOMPLETE=1 collect_results || true
  fi
  if [ "$status" -ne 0 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

peer_cert "$WORK/cert" "$PEER_DOMAIN"
export PEER_CERT="$WORK/cert/$PEER_DOMAIN.crt" PEER_KEY="$WORK/cert/$PEER_DOMAIN.key"
chmod 0644 "$PEER_CERT" "$PEER_KEY"
CA="$PEER_CERT"

collect_results() {
  mkdir -p "$OUT"
  export WORK OUT COMMAND SMOKE REPS PINNING NOFILE BUSY_AT_START LOADAVG_START BENCH_S ROOT TERN \
    USERS SCENARIO_USERS CONTACTS SERVERS
  LEVELS_LIST="${LEVELS[*]}" python3 "$HERE/peers/collect.py"
  python3 "$HERE/peers/report.py" "$OUT" >/dev/null
}

start_server() {
  local cmd
  mapfile -t cmd < <("$HERE/peers/$CURRENT.sh" command)
  "${PIN_SERVER[@]}" "${cmd[@]}" >>"$PEER_DIR/server.out" 2>&1 &
  SERVER_PID=$!
  if ! peer_wait_port "$PEER_PORT" 120; then
    echo "$CURRENT did not start listening on $PEER_PORT" >&2
    tail -n 20 "$PEER_DIR/server.out" >&2
    exit 1
  fi
}
stop_server() {
  "$HERE/peers/$CURRENT.sh" stop "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# One tern-load run: NAME (the report's file name) SCENARIO ARGS... Reports go to
# $PEER_DIR/reports/NAME.json; a failed run leaves NAME.err and no report.
load() {
  local name="$1" scenario="$2"
  shift 2
  local cmd=("${PIN_GEN[@]}" "$LOAD" "$scenario" --addr "127.0.0.1:$PEER_PORT" --domain "$PEER_DOMAIN"
    --password "$PEER_PASSWORD" --ca "$CA" --key-cache "$PEER_DIR/scram-keys.json" --label "$CURRENT" --fetch-roster "$@")
  printf '%s\t%s\n' "$name" "${cmd[*]}" >>"$PEER_DIR/commands.tsv"
  note "$CURRENT $name"
  if "${cmd[@]}" >"$PEER_DIR/reports/$name.json.part" 2>"$PEER_DIR/reports/$name.err"; then
    mv "$PEER_DIR/reports/$name.json.part" "$PEER_DIR/reports/$name.json"
    return 0
  fi
  rm -f "$PEER_DIR/reports/$name.json.part"
  note "$CURRENT $name failed: $(tail -n 3 "$PEER_DIR/reports/$name.err")"
  return 1
}

# A second generator holds LEVEL idle connections until the ready file is removed; its
# report is the idle scenario at that level. The held accounts are the last LEVEL ones:
# with --scale, 1000 held of 10,200 accounts are then mostly u9200..u9999, neighbours in
# the order a store keeps its keys, as 1000 users online out of 10,000 would be somewhere
# (u200..u1199 sort among u2000..u9999, and logging them in read pages holding nearly
# every account). Without --scale the last 1000 of 1200 are u200..u1199 as before.
start_holder() {
  local name="$1" level="$2"
  local ready="$PEER_DIR/holder.ready"
  rm -f "$ready"
  (load "$name" idle --users "$level" --first-user "$((USERS - level))" --connections "$level" \
    --ramp-rate "$RAMP_RATE" --hold 3600 --ready-file "$ready" --server-pid "$SERVER_PID" --timeout 60) &
  HOLDER_PID=$!
  local waited=0
  while [ ! -f "$ready" ]; do
    kill -0 "$HOLDER_PID" 2>/dev/null || { note "the idle holder ended before it was ready"; HOLDER_PID=""; return 1; }
    sleep 0.5; waited=$((waited + 1))
    [ "$waited" -gt 2400 ] && { note "the idle holder was not ready in 20 minutes"; return 1; }
  done
  sleep 1
}
stop_holder() {
  rm -f "$PEER_DIR/holder.ready"
  wait "$HOLDER_PID" 2>/dev/null || true
  HOLDER_PID=""
}

# The fixed-rate scenarios on the scenario accounts, with the holder's connections online.
fixed_rate_scenarios() {
  local tag="$1"
  local common=(--users "$SCENARIO_USERS" --server-pid "$SERVER_PID")
  load "logins-$tag" logins "${common[@]}" --rate "$LOGIN_RATE" --duration "$LOGIN_DURATION" || true
  load "messages-$tag" messages "${common[@]}" --pairs "$PAIRS" --rate "$MSG_RATE" --duration "$MSG_DURATION" || true
  load "services-$tag" extdisco "${common[@]}" --kind services --clients "$EXT_CLIENTS" \
    --rate "$EXT_RATE" --duration "$EXT_DURATION" --turn-host "$PEER_TURN_HOST" || true
  load "credentials-$tag" extdisco "${common[@]}" --kind credentials --clients "$EXT_CLIENTS" \
    --rate "$EXT_RATE" --duration "$EXT_DURATION" --turn-host "$PEER_TURN_HOST" || true
  load "ping-$tag" extdisco "${common[@]}" --kind ping --clients "$EXT_CLIENTS" \
    --rate "$EXT_RATE" --duration "$EXT_DURATION" --turn-host "$PEER_TURN_HOST" || true
}

# Whether a report passes its max-rate criterion (see bench/peers/criteria.py).
passes() { python3 "$HERE/peers/criteria.py" "$PEER_DIR/reports/$1.json" 2>/dev/null; }

# The floor: the same rates against a TLS server that does no XMPP (bench/floor/src/tls.rs).
# One JSON line per run in $WORK/floor/NAME.json.
floor_run() {
  local name="$1"
  shift
  note "floor $name"
  if ! "${PIN_GEN[@]}" "$FLOOR_EXE" "$@" >"$WORK/floor/$name.json.part" 2>"$WORK/floor/$name.err"; then
    note "floor $name failed: $(tail -n 3 "$WORK/floor/$name.err")"
    return 0
  fi
  mv "$WORK/floor/$name.json.part" "$WORK/floor/$name.json"
}
floor_round() {
  local rep="$1"
  mkdir -p "$WORK/floor"
  "${PIN_SERVER[@]}" "$FLOOR_EXE" tls-server >>"$WORK/floor/server.out" 2>&1 &
  FLOOR_PID=$!
  for port in 27003 27004 27005; do peer_wait_port "$port" 30 || note "the floor server is not listening on $port"; done
  floor_run "logins-r$rep" tls-logins "$FLOOR_PID" "$LOGIN_RATE" "$((LOGIN_RATE * LOGIN_DURATION))"
  floor_run "messages-r$rep" tls-messages "$FLOOR_PID" "$MSG_RATE" "$((MSG_RATE * MSG_DURATION))" "$PAIRS"
  floor_run "requests-r$rep" tls-requests "$FLOOR_PID" "$EXT_RATE" "$((EXT_RATE * EXT_DURATION))" "$EXT_CLIENTS"
  kill "$FLOOR_PID" 2>/dev/null || true
  wait "$FLOOR_PID" 2>/dev/null || true
  FLOOR_PID=""
}

# Makes SERVER the current one: its folder and the ports drawn for it at the start.
use_server() {
  CURRENT="$1"
  export PEER_DIR="$WORK/$1"
  read -r PEER_PORT EJ_DIST_PORT <"$PEER_DIR/ports"
  export PEER_PORT EJ_DIST_PORT
}

# The servers of repetition REP, the list rotated by REP - 1: each server runs first,
# second and third in turn.
servers_of_round() {
  local rep="$1" n="${#READY[@]}"
  [ "$n" = 0 ] && return 0
  local k=$(((rep - 1) % n))
  printf '%s\n' "${READY[@]:k}" "${READY[@]:0:k}"
}

BENCH_START=$(date +%s)
# Set-up, not measured, one server after the other: config, accounts, then rosters (and
# with them the SCRAM key cache). The ports of all servers are drawn at once, so that no
# two share one.
read -r -a PORTS < <(free_ports $((2 * ${#SERVER_LIST[@]})))
READY=()
i=0
for server in "${SERVER_LIST[@]}"; do
  mkdir -p "$WORK/$server/reports"
  : >"$WORK/$server/commands.tsv"
  echo "${PORTS[$i]} ${PORTS[$((i + 1))]}" >"$WORK/$server/ports"
  i=$((i + 2))
  use_server "$server"
  note "$server: prepare ($USERS accounts) in $PEER_DIR, port $PEER_PORT"
  prepare_start=$(date +%s)
  if ! "$HERE/peers/$server.sh" prepare; then
    note "$server: prepare failed; skipping it"
    echo "prepare failed" >"$PEER_DIR/reports/prepare.err"
    continue
  fi
  # The ejabberd driver hands the folder to the ejabberd user; the generator writes its
  # reports there as root, which is fine.
  echo "$(($(date +%s) - prepare_start))" >"$PEER_DIR/prepare_s"
  start_server
  if load rosters rosters --users "$USERS" --contacts "$CONTACTS" --rate 2000 --drain 1800 \
    --concurrency 64 --timeout 120 --server-pid "$SERVER_PID"; then
    READY+=("$server")
  fi
  stop_server
done

# The measured rounds take the servers (and then the floor) in turn, repetition by
# repetition, in a rotated order: this machine's speed drifts by 10-30 % over the length
# of a run (2026-11-26T0643Z: Prosody's message cost 256 µs in the run before, 330 µs in
# that one), and a slow spell then weighs on every server alike, not on whichever ran in it.
# Delay accounting (lib.sh) for the start-ups' disk waits, back off after them. Not in a
# smoke run: it takes no lock, and could switch it off under a full run.
if [ "$SMOKE" = 0 ]; then delay_accounting_on; fi
for rep in $(seq 1 "$REPS"); do
  mapfile -t round < <(servers_of_round "$rep")
  for server in "${round[@]}"; do
    use_server "$server"
    stop_cmd="$HERE/peers/$server.sh stop \$SERVER_PID"
    mapfile -t cmd < <("$HERE/peers/$server.sh" command)
    # What the step before wrote (ejabberd dumps its tables when it stops) may still be on
    # its way to the disk, and a start-up that syncs waits for it: Tern's database opens
    # with fsyncs, and its first login took 66 and 167 ms in two repetitions of
    # 2026-11-29T0627Z, each right after an ejabberd, with under 10 ms of CPU, against 21
    # ms in the third. Each server starts on a disk with nothing left to write.
    sync
    load "startup-r$rep" startup --users 1 --idle "$STARTUP_IDLE" --timeout 120 \
      --stop-command "$stop_cmd" --server-log "$PEER_DIR/server.out" -- "${PIN_SERVER[@]}" "${cmd[@]}" || true
  done
done
delay_accounting_back

for rep in $(seq 1 "$REPS"); do
  mapfile -t round < <(servers_of_round "$rep")
  for level in "${LEVELS[@]}"; do
    for server in "${round[@]}"; do
      use_server "$server"
      start_server
      if start_holder "idle-$level-r$rep" "$level"; then
        fixed_rate_scenarios "$level-r$rep"
        stop_holder
      fi
      stop_server
    done
  done
  if [ "$FLOOR" = 1 ]; then
    CURRENT=""
    floor_round "$rep"
  fi
done

# Max rates, one server after the other, each on a fresh server with the lowest level of
# idle connections held.
for server in "${READY[@]}"; do
  use_server "$server"
  start_server
  start_holder "idle-${LEVELS[0]}-max" "${LEVELS[0]}" || true
  for rate in "${LOGIN_STEPS[@]}"; do
    load "logins-max-$rate" logins --users "$SCENARIO_USERS" --server-pid "$SERVER_PID" \
      --rate "$rate" --duration "$STEP_DURATION" || break
    passes "logins-max-$rate" || break
  done
  best_msg=""
  for rate in "${MSG_STEPS[@]}"; do
    load "messages-max-$rate" messages --users "$SCENARIO_USERS" --server-pid "$SERVER_PID" \
      --pairs "$PAIRS" --rate "$rate" --duration "$STEP_DURATION" --drain 5 || break
    passes "messages-max-$rate" || break
    best_msg="$rate"
  done
  if [ -n "$best_msg" ]; then
    load "messages-halfmax" messages --users "$SCENARIO_USERS" --server-pid "$SERVER_PID" \
      --pairs "$PAIRS" --rate "$((best_msg / 2))" --duration "$MSG_DURATION" || true
  fi
  [ -n "$HOLDER_PID" ] && stop_holder
  stop_server

  tail -n 200 "$PEER_DIR/server.out" >"$PEER_DIR/server-tail.log" 2>/dev/null || true
done
BENCH_S=$(($(date +%s) - BENCH_START))
CURRENT=""

# ---------------------------------------------------------------- results
COLLECTED=1
collect_results
note "results in $OUT"
