#!/usr/bin/env bash
# Benchmarks Tern with tern-load (src/bin/tern-load): idle connections, logins, messages
# and XEP-0215 requests, open-loop, with the server's CPU per operation read from /proc.
#
#   bench/run.sh            # the standard small run (about a minute of load)
#   bench/run.sh --smoke    # everything tiny (a few seconds of load), for CI
#   bench/run.sh --debug    # use debug builds (only to test this script: never to measure)
#   bench/run.sh --peers [--scale] [--smoke] ...
#                           # Tern, Prosody and ejabberd side by side: runs bench/compare.sh
#
# Steps: builds tern and tern-load (release, CARGO_BUILD_JOBS=1 unless set); waits until
# no other rustc runs (BENCH_QUIET_WAIT seconds, default 600; not with --smoke); writes a
# throwaway config (bench/lib/tern-config.sh: require_encryption, sled storage, the
# default modules plus external_services with 1 STUN and 3 TURN REST services, no
# credential rate limit) in a work folder; adds accounts u0..u{N-1} with password pw
# offline (`tern adduser`); starts tern on two free loopback ports, which generates its
# ECDSA certificate; logs every account in once to fill tern-load's SCRAM key cache
# (--key-cache; not measured) and restarts tern fresh; pins the server to CPU 0 and the
# generator to CPU 1 (taskset, when there are 2 CPUs or more); raises `ulimit -n` to the
# hard limit; runs each scenario; stops tern; writes bench/results/tern-<UTC time>.json
# (every report plus the machine, commit and commands) and bench/results/latest.md (a
# summary). --smoke writes to bench/results/smoke/ instead (not tracked by git). Exit
# status 1 if a scenario failed or lost anything (a failed login, a message not delivered,
# a request not answered); a generator-bound run is flagged in the summary but is not a
# failure.
#
# Sizes can be overridden from the environment: BENCH_CONNECTIONS, BENCH_HOLD, BENCH_RAMP_RATE,
# BENCH_LOGIN_RATE, BENCH_LOGIN_DURATION, BENCH_PAIRS, BENCH_MSG_RATE, BENCH_MSG_DURATION,
# BENCH_EXT_CLIENTS, BENCH_EXT_RATE, BENCH_EXT_DURATION. Also: BENCH_OUT (results folder),
# BENCH_RUST_LOG (server log filter, default info), BENCH_SERVER_CPU / BENCH_GEN_CPU (0 / 1),
# TERN_BIN and TERN_LOAD_BIN (use these binaries, no build), BENCH_KEEP=1 (keep the work
# folder with tern.log and each scenario's raw output), TERN_WRAP (a command the server runs
# under, e.g. valgrind: build/collect-code-layout.sh uses it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/tern-config.sh
. "$HERE/lib/tern-config.sh"
COMMAND="bench/run.sh${*:+ $*}"

# --peers: Tern side by side with Prosody and ejabberd, a separate script (its own options:
# bench/compare.sh --help).
for arg in "$@"; do
  if [ "$arg" = --peers ]; then
    exec bash "$HERE/compare.sh" "$@"
  fi
done

SMOKE=0
PROFILE=release
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    --debug) PROFILE=debug ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

if [ "$SMOKE" = 1 ]; then
  CONNECTIONS="${BENCH_CONNECTIONS:-20}"
  HOLD="${BENCH_HOLD:-1}"
  RAMP_RATE="${BENCH_RAMP_RATE:-50}"
  LOGIN_RATE="${BENCH_LOGIN_RATE:-20}"
  LOGIN_DURATION="${BENCH_LOGIN_DURATION:-1}"
  PAIRS="${BENCH_PAIRS:-5}"
  MSG_RATE="${BENCH_MSG_RATE:-50}"
  MSG_DURATION="${BENCH_MSG_DURATION:-1}"
  EXT_CLIENTS="${BENCH_EXT_CLIENTS:-4}"
  EXT_RATE="${BENCH_EXT_RATE:-40}"
  EXT_DURATION="${BENCH_EXT_DURATION:-1}"
  OUT="${BENCH_OUT:-$HERE/results/smoke}"
else
  CONNECTIONS="${BENCH_CONNECTIONS:-200}"
  HOLD="${BENCH_HOLD:-5}"
  RAMP_RATE="${BENCH_RAMP_RATE:-100}"
  LOGIN_RATE="${BENCH_LOGIN_RATE:-100}"
  LOGIN_DURATION="${BENCH_LOGIN_DURATION:-10}"
  PAIRS="${BENCH_PAIRS:-50}"
  MSG_RATE="${BENCH_MSG_RATE:-500}"
  MSG_DURATION="${BENCH_MSG_DURATION:-10}"
  EXT_CLIENTS="${BENCH_EXT_CLIENTS:-20}"
  EXT_RATE="${BENCH_EXT_RATE:-200}"
  EXT_DURATION="${BENCH_EXT_DURATION:-10}"
  OUT="${BENCH_OUT:-$HERE/results}"
fi
DOMAIN=localhost
PASSWORD=pw
USERS=$CONNECTIONS
[ $((2 * PAIRS)) -gt "$USERS" ] && USERS=$((2 * PAIRS))
[ "$EXT_CLIENTS" -gt "$USERS" ] && USERS=$EXT_CLIENTS

note() { echo "---- $*" >&2; }

# ---------------------------------------------------------------- build
if [ -n "${TERN_BIN:-}" ] && [ -n "${TERN_LOAD_BIN:-}" ]; then
  TERN="$TERN_BIN"
  LOAD="$TERN_LOAD_BIN"
  note "using TERN_BIN=$TERN and TERN_LOAD_BIN=$LOAD (no build)"
else
  note "cargo build ($PROFILE) --bin tern --bin tern-load"
  flags=()
  [ "$PROFILE" = release ] && flags+=(--release)
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --quiet "${flags[@]}" --bin tern --bin tern-load)
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$ROOT/target")"
  TERN="$TARGET_DIR/$PROFILE/tern"
  LOAD="$TARGET_DIR/$PROFILE/tern-load"
fi

# ---------------------------------------------------------------- a quiet machine
other_builds() { pgrep -f rustc >/dev/null 2>&1; }
BUSY_AT_START=false
if other_builds; then
  if [ "$SMOKE" = 1 ]; then
    BUSY_AT_START=true
    note "another rustc is running: smoke figures are not meaningful (they never are)"
  else
    note "waiting for other builds (rustc) to finish before measuring (at most ${BENCH_QUIET_WAIT:-600} s)"
    waited=0
    while other_builds && [ "$waited" -lt "${BENCH_QUIET_WAIT:-600}" ]; do
      sleep 5
      waited=$((waited + 5))
    done
    if other_builds; then
      BUSY_AT_START=true
      note "WARNING: other builds still running; the results are flagged busy_at_start"
    fi
  fi
fi
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- limits and pinning
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ]; then hard=1048576; fi
ulimit -n "$hard" 2>/dev/null || true
NOFILE="$(ulimit -n)"
CPUS="$(nproc)"
if [ "$CPUS" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  SERVER_CPU="${BENCH_SERVER_CPU:-0}"
  GEN_CPU="${BENCH_GEN_CPU:-1}"
  PIN_SERVER=(taskset -c "$SERVER_CPU")
  PIN_GEN=(taskset -c "$GEN_CPU")
  PINNING="server on CPU $SERVER_CPU, generator on CPU $GEN_CPU"
else
  PIN_SERVER=()
  PIN_GEN=()
  PINNING="none ($CPUS CPU)"
fi

# ---------------------------------------------------------------- server
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-bench.XXXXXX")"
TERN_PID=""
cleanup() {
  local status=$?
  if [ -n "$TERN_PID" ] && kill -0 "$TERN_PID" 2>/dev/null; then
    kill "$TERN_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$TERN_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$TERN_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PORT PORT_TLS < <(free_ports 2)
TURN_HOST=turn.example.org
write_tern_config --domain "$DOMAIN" --c2s "$PORT" --direct-tls "$PORT_TLS" \
  --modules "$TERN_BENCH_MODULES" --no-throttle \
  --turn-host "$TURN_HOST" --turn-secret bench-secret-not-for-production --turn-ttl 86400 \
  >"$WORK/tern.toml"
# It holds the TURN secret: owner only (Tern warns about a world-readable one).
chmod 600 "$WORK/tern.toml"
CONFIG="$WORK/tern.toml"
CA="$WORK/certs/$DOMAIN.crt"

note "adding $USERS accounts u0..u$((USERS - 1)) offline (work folder $WORK)"
adduser_start=$(date +%s.%N)
for i in $(seq 0 $((USERS - 1))); do
  if ! "$TERN" adduser "u$i@$DOMAIN" --password "$PASSWORD" --config "$CONFIG" >"$WORK/adduser.log" 2>&1; then
    echo "tern adduser u$i@$DOMAIN failed:" >&2
    cat "$WORK/adduser.log" >&2
    exit 1
  fi
done
ADDUSER_S=$(python3 -c "import time; print(round(time.time() - $adduser_start, 2))")

RUST_LOG_SERVER="${BENCH_RUST_LOG:-info}"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Tenths of a second to wait for the server to listen and to exit: a wrapped one
# (valgrind) starts slowly and writes its profile as it exits.
if [ -n "${TERN_WRAP:-}" ]; then
  START_TICKS=600 STOP_TICKS=600
else
  START_TICKS=150 STOP_TICKS=100
fi
start_tern() {
  # shellcheck disable=SC2086 # TERN_WRAP is a command line, split on purpose
  RUST_LOG="$RUST_LOG_SERVER" "${PIN_SERVER[@]}" ${TERN_WRAP:-} "$TERN" run --config "$CONFIG" >>"$WORK/tern.log" 2>&1 &
  TERN_PID=$!
  for _ in $(seq 1 "$START_TICKS"); do
    kill -0 "$TERN_PID" 2>/dev/null || break
    if port_open "$PORT" && [ -s "$CA" ]; then break; fi
    sleep 0.1
  done
  if ! port_open "$PORT" || ! [ -s "$CA" ]; then
    echo "tern did not start listening on 127.0.0.1:$PORT in time:" >&2
    tail -n 20 "$WORK/tern.log" >&2
    exit 1
  fi
}
stop_tern() {
  kill "$TERN_PID" 2>/dev/null || true
  for _ in $(seq 1 "$STOP_TICKS"); do
    kill -0 "$TERN_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$TERN_PID" 2>/dev/null || true
  wait "$TERN_PID" 2>/dev/null || true
  TERN_PID=""
}

# Warm-up, not measured: one login per account fills the generator's SCRAM key cache
# (PBKDF2 once per account) so no scenario derives keys while measuring. Then a fresh
# server, so that `idle` sees a process that never held a connection.
KEYS="$WORK/scram-keys.json"
start_tern
note "warm-up: one login per account to fill $KEYS (tern pid $TERN_PID)"
if ! "${PIN_GEN[@]}" "$LOAD" idle --addr "127.0.0.1:$PORT" --domain "$DOMAIN" --users "$USERS" \
  --password "$PASSWORD" --ca "$CA" --key-cache "$KEYS" --connections "$USERS" --hold 0 \
  >"$WORK/warmup.json" 2>"$WORK/warmup.err"; then
  echo "warm-up failed: $(tail -n 5 "$WORK/warmup.err")" >&2
  exit 1
fi
stop_tern
start_tern
note "tern (pid $TERN_PID) on 127.0.0.1:$PORT; pinning: $PINNING; ulimit -n $NOFILE"

# ---------------------------------------------------------------- scenarios
COMMON=(--addr "127.0.0.1:$PORT" --domain "$DOMAIN" --users "$USERS" --password "$PASSWORD"
  --ca "$CA" --key-cache "$KEYS" --server-pid "$TERN_PID" --label tern)
: >"$WORK/commands.txt"
run_scenario() {
  local name="$1"
  shift
  local cmd=("${PIN_GEN[@]}" "$LOAD" "$name" "${COMMON[@]}" "$@")
  printf '%s\t%s\n' "$name" "${cmd[*]}" >>"$WORK/commands.txt"
  note "$name: ${cmd[*]}"
  if "${cmd[@]}" >"$WORK/$name.json" 2>"$WORK/$name.err"; then
    :
  else
    echo "tern-load $name failed: $(tail -n 5 "$WORK/$name.err")" >&2
    rm -f "$WORK/$name.json"
  fi
  sleep 1
}
BENCH_START=$(date +%s.%N)
run_scenario idle --connections "$CONNECTIONS" --hold "$HOLD" --ramp-rate "$RAMP_RATE"
run_scenario logins --rate "$LOGIN_RATE" --duration "$LOGIN_DURATION"
run_scenario messages --pairs "$PAIRS" --rate "$MSG_RATE" --duration "$MSG_DURATION"
run_scenario extdisco --clients "$EXT_CLIENTS" --rate "$EXT_RATE" --duration "$EXT_DURATION" --turn-host "$TURN_HOST"
BENCH_S=$(python3 -c "import time; print(round(time.time() - $BENCH_START, 1))")
stop_tern

# ---------------------------------------------------------------- results
mkdir -p "$OUT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
export WORK OUT STAMP COMMAND SMOKE PROFILE PINNING NOFILE CPUS USERS ADDUSER_S BENCH_S \
  BUSY_AT_START LOADAVG_START RUST_LOG_SERVER ROOT
python3 "$HERE/summarize.py"
