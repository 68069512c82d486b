#!/usr/bin/env bash
# Soak test: Tern holds SOAK_CONNECTIONS idle client connections (default 10000) while
# other clients churn for SOAK_SECONDS (default 600): full logins and logouts, chat
# messages between online pairs, XEP-0215 services/credentials requests, each scenario of
# tern-load (src/bin/tern-load) in a loop on its own accounts. The server process is
# sampled from /proc meanwhile (RSS, PSS, open fds, threads, CPU, its TCP connections).
#
#   bench/soak.sh                                    # the full soak: 10k connections, 10 minutes
#   SOAK_CONNECTIONS=50 SOAK_SECONDS=10 bench/soak.sh   # a tiny run (tests the plumbing)
#   bench/soak.sh --help
#
# Steps: release build of tern and tern-load (CARGO_BUILD_JOBS=1 unless set); a throwaway
# config in a work folder (bench/lib/tern-config.sh: sled, require_encryption, the default
# modules plus external_services with 1 STUN and 3 TURN REST services and no credential
# rate limit, `[limits] rate = 0` and `stanza_rate = 0` so nothing is throttled);
# accounts: the first SOAK_OFFLINE_ACCOUNTS with `tern adduser` (one process each,
# offline, timed), the rest through the running server's admin socket (one connection,
# bench/soak_report.py adduser); a fresh server; `ulimit -n` raised to the hard limit; the
# idle connections logged in at SOAK_RAMP_RATE per second (SOAK_IDLE_GENERATORS tern-load
# processes share them); when all are up, the churn loops for SOAK_SECONDS; then the idle
# connections close, and after SOAK_SETTLE seconds (then SOAK_RAMPS-1 more ramps of them,
# each held SOAK_RAMP_HOLD s once all are up, closed and settled) the last sample. Checks
# (bench/soak_report.py report): every tern-load run exited 0 with 0 failed / lost /
# errors; every idle connection held throughout; open fds back to the baseline (±
# SOAK_FD_SLACK); no connection left on the server port; no session left (server log:
# "session bound" minus "session closed"); no ERROR line and no failed authentication in
# the server log; RSS flat in the second half of the churn window (drift ≤
# SOAK_RSS_DRIFT_PCT %); with more ramps, each held all, its RSS peak ≤ the first's × 1.05,
# and RSS at the end ≤ 50 % of the first peak (from 1000 connections). Exit status 1 if a
# check failed.
#
# Output in SOAK_OUT (default docs/soak for a run of 10000+ connections and 600+ seconds,
# bench/results/soak-dev otherwise, not tracked): soak.json (settings, samples, every
# tern-load report, checks), soak.md (summary with the command), soak.svg (RSS/PSS, fds and
# connections over time).
#
# Environment (defaults in brackets): SOAK_CONNECTIONS [10000], SOAK_SECONDS [600],
# SOAK_RAMP_RATE [200 logins/s], SOAK_IDLE_GENERATORS [1], SOAK_ITERATION [60 s per churn
# run], SOAK_LOGIN_RATE [50/s], SOAK_LOGIN_USERS [1000], SOAK_PAIRS [50], SOAK_MSG_RATE
# [500/s], SOAK_EXT_CLIENTS [20], SOAK_EXT_RATE [100/s], SOAK_INTERVAL [5 s between samples],
# SOAK_SETTLE [10 s], SOAK_FD_SLACK [5], SOAK_RSS_DRIFT_PCT [10], SOAK_OFFLINE_ACCOUNTS
# [100], SOAK_RAMPS [1], SOAK_RAMP_HOLD [30 s, at least one sample interval], SOAK_RUST_LOG
# [info], SOAK_OUT, SOAK_KEEP=1 (keep the work folder), TERN_BIN and TERN_LOAD_BIN (use these
# binaries, no build; SOAK_BINARY_COMMIT names the commit they were built from).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/tern-config.sh
. "$HERE/lib/tern-config.sh"

for arg in "$@"; do
  case "$arg" in
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

CONNECTIONS="${SOAK_CONNECTIONS:-10000}"
SECONDS_SOAK="${SOAK_SECONDS:-600}"
RAMP_RATE="${SOAK_RAMP_RATE:-200}"
IDLE_GENERATORS="${SOAK_IDLE_GENERATORS:-1}"
ITERATION="${SOAK_ITERATION:-60}"
LOGIN_RATE="${SOAK_LOGIN_RATE:-50}"
LOGIN_USERS="${SOAK_LOGIN_USERS:-1000}"
PAIRS="${SOAK_PAIRS:-50}"
MSG_RATE="${SOAK_MSG_RATE:-500}"
EXT_CLIENTS="${SOAK_EXT_CLIENTS:-20}"
EXT_RATE="${SOAK_EXT_RATE:-100}"
# Samples: every 5 s, or more often in short runs (20 samples over the churn window at least).
INTERVAL="${SOAK_INTERVAL:-$(python3 -c "print(max(1, min(5, round(${SOAK_SECONDS:-600} / 20))))")}"
SETTLE="${SOAK_SETTLE:-10}"
FD_SLACK="${SOAK_FD_SLACK:-5}"
RSS_DRIFT_PCT="${SOAK_RSS_DRIFT_PCT:-10}"
OFFLINE_ACCOUNTS="${SOAK_OFFLINE_ACCOUNTS:-100}"
RAMPS="${SOAK_RAMPS:-1}"
RAMP_HOLD="${SOAK_RAMP_HOLD:-30}"
RUST_LOG_SERVER="${SOAK_RUST_LOG:-info}"
if [ "$CONNECTIONS" -ge 10000 ] && [ "$SECONDS_SOAK" -ge 600 ]; then
  OUT="${SOAK_OUT:-$ROOT/docs/soak}"
else
  OUT="${SOAK_OUT:-$ROOT/bench/results/soak-dev}"
fi
COMMAND="$(for v in SOAK_CONNECTIONS SOAK_SECONDS SOAK_RAMP_RATE SOAK_IDLE_GENERATORS SOAK_ITERATION \
  SOAK_LOGIN_RATE SOAK_LOGIN_USERS SOAK_PAIRS SOAK_MSG_RATE SOAK_EXT_CLIENTS SOAK_EXT_RATE \
  SOAK_INTERVAL SOAK_SETTLE SOAK_RAMPS SOAK_RAMP_HOLD; do if [ -n "${!v:-}" ]; then printf '%s=%s ' "$v" "${!v}"; fi; done)bench/soak.sh"
DOMAIN=localhost
PASSWORD=pw
TURN_HOST=turn.example.org

note() { echo "---- $(date -u +%H:%M:%S) $*" >&2; }
die() {
  echo "soak: $*" >&2
  exit 1
}

for v in CONNECTIONS SECONDS_SOAK IDLE_GENERATORS ITERATION LOGIN_USERS PAIRS EXT_CLIENTS SETTLE \
  FD_SLACK OFFLINE_ACCOUNTS RAMPS RAMP_HOLD; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got ${!v})"
done
if [ "$IDLE_GENERATORS" -lt 1 ] || [ "$IDLE_GENERATORS" -gt "$CONNECTIONS" ]; then
  die "SOAK_IDLE_GENERATORS must be between 1 and SOAK_CONNECTIONS"
fi
[ "$SECONDS_SOAK" -ge 5 ] || die "SOAK_SECONDS must be at least 5"
[ "$RAMPS" -ge 1 ] || die "SOAK_RAMPS must be at least 1"

# ---------------------------------------------------------------- build
# The commit at the start: the tree may move during an hour's run. Binaries handed over
# through TERN_BIN may come from anywhere: SOAK_BINARY_COMMIT says from where.
SOAK_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || SOAK_COMMIT="$SOAK_COMMIT (with uncommitted changes)"
if [ -n "${TERN_BIN:-}" ]; then
  SOAK_COMMIT="${SOAK_BINARY_COMMIT:-unknown} (TERN_BIN=$TERN_BIN; the tree was at $SOAK_COMMIT)"
fi
if [ -n "${TERN_BIN:-}" ] && [ -n "${TERN_LOAD_BIN:-}" ]; then
  TERN="$TERN_BIN"
  LOAD="$TERN_LOAD_BIN"
  note "using TERN_BIN=$TERN and TERN_LOAD_BIN=$LOAD (no build)"
else
  note "cargo build --release --bin tern --bin tern-load"
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --quiet --release --bin tern --bin tern-load)
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  TERN="$TARGET_DIR/release/tern"
  LOAD="$TARGET_DIR/release/tern-load"
fi

# ---------------------------------------------------------------- limits
hard="$(ulimit -Hn)"
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
NOFILE="$(ulimit -n)"
# The server holds every connection (idle + churn) plus its own files.
CHURN_CONNS=$((200 + 2 * PAIRS + EXT_CLIENTS)) # logins in flight, pairs, XEP-0215 clients
NEED=$((CONNECTIONS + CHURN_CONNS + 100))
[ "$NEED" -le "$NOFILE" ] ||
  die "ulimit -n is $NOFILE (hard limit $hard) but the server needs about $NEED descriptors"
read -r PORT_LOW PORT_HIGH </proc/sys/net/ipv4/ip_local_port_range
PORTS=$((PORT_HIGH - PORT_LOW + 1))
[ "$NEED" -le "$PORTS" ] ||
  die "the local port range $PORT_LOW-$PORT_HIGH ($PORTS ports) is smaller than the $NEED connections"

# ---------------------------------------------------------------- cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-soak.XXXXXX")"
TERN_PID=""
PIDS=() # samplers, generators and churn loops, killed at exit
cleanup() {
  local status=$?
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  stop_tern
  if [ "$status" -ne 0 ] || [ "${SOAK_KEEP:-0}" = 1 ]; then
    echo "work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
stop_tern() {
  [ -n "$TERN_PID" ] || return 0
  kill "$TERN_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$TERN_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$TERN_PID" 2>/dev/null || true
  wait "$TERN_PID" 2>/dev/null || true
  TERN_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM
event() { echo "$(date +%s.%N) $1" >>"$WORK/events.tsv"; }

# ---------------------------------------------------------------- config
read -r PORT PORT_TLS < <(free_ports 2)
# A listening port inside the local range could be taken by a client's source port.
write_tern_config --domain "$DOMAIN" --c2s "$PORT" --direct-tls "$PORT_TLS" \
  --modules "$TERN_BENCH_MODULES" --no-throttle \
  --turn-host "$TURN_HOST" --turn-secret soak-secret-not-for-production --turn-ttl 86400 \
  >"$WORK/tern.toml"
# It holds the TURN secret: owner only (Tern warns about a world-readable one).
chmod 600 "$WORK/tern.toml"
CONFIG="$WORK/tern.toml"
CA="$WORK/certs/$DOMAIN.crt"
"$TERN" check --config "$CONFIG" >"$WORK/check.log" 2>&1 || {
  cat "$WORK/check.log" >&2
  die "tern check failed"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_tern() {
  local log="$1"
  RUST_LOG="$RUST_LOG_SERVER" "$TERN" run --config "$CONFIG" >>"$WORK/$log" 2>&1 &
  TERN_PID=$!
  for _ in $(seq 1 300); do
    kill -0 "$TERN_PID" 2>/dev/null || break
    if port_open "$PORT" && [ -s "$CA" ] && [ -S "$WORK/data/admin.sock" ]; then break; fi
    sleep 0.1
  done
  if ! port_open "$PORT" || ! [ -s "$CA" ] || ! [ -S "$WORK/data/admin.sock" ]; then
    tail -n 20 "$WORK/$log" >&2
    die "tern did not start listening on 127.0.0.1:$PORT within 30 s"
  fi
}

# ---------------------------------------------------------------- accounts
# Idle generator g uses accounts i{g}x0.., the churn scenarios l0.., m0.., e0...
IDLE_PER_GEN=()
for g in $(seq 0 $((IDLE_GENERATORS - 1))); do
  IDLE_PER_GEN+=($(((CONNECTIONS + g) / IDLE_GENERATORS)))
done
GROUPS_=()
for g in $(seq 0 $((IDLE_GENERATORS - 1))); do GROUPS_+=("i${g}x:${IDLE_PER_GEN[$g]}"); done
GROUPS_+=("l:$LOGIN_USERS" "m:$((2 * PAIRS))" "e:$EXT_CLIENTS")
ACCOUNTS=0
for grp in "${GROUPS_[@]}"; do ACCOUNTS=$((ACCOUNTS + ${grp#*:})); done

note "work folder $WORK; $ACCOUNTS accounts"
# Offline, one process each (as an operator would), timed: the first OFFLINE_ACCOUNTS.
offline_done=0
offline_start=$(date +%s.%N)
for grp in "${GROUPS_[@]}"; do
  prefix=${grp%%:*}
  count=${grp#*:}
  for i in $(seq 0 $((count - 1))); do
    [ "$offline_done" -lt "$OFFLINE_ACCOUNTS" ] || break 2
    "$TERN" adduser "$prefix$i@$DOMAIN" --password "$PASSWORD" --config "$CONFIG" \
      >"$WORK/adduser.log" 2>&1 || {
      cat "$WORK/adduser.log" >&2
      die "tern adduser $prefix$i@$DOMAIN failed"
    }
    offline_done=$((offline_done + 1))
  done
done
OFFLINE_S=$(python3 -c "import time; print(round(time.time() - $offline_start, 2))")
note "$offline_done accounts with tern adduser (offline, one process each): $OFFLINE_S s"

# The rest through the running server's admin socket (one connection for all).
start_tern tern-accounts.log
socket_start=$(date +%s.%N)
skip=$offline_done
for grp in "${GROUPS_[@]}"; do
  prefix=${grp%%:*}
  count=${grp#*:}
  if [ "$skip" -ge "$count" ]; then
    skip=$((skip - count))
    continue
  fi
  python3 "$HERE/soak_report.py" adduser --socket "$WORK/data/admin.sock" --domain "$DOMAIN" \
    --password "$PASSWORD" --prefix "$prefix" --first "$skip" --count "$count"
  skip=0
done
SOCKET_S=$(python3 -c "import time; print(round(time.time() - $socket_start, 2))")
SOCKET_N=$((ACCOUNTS - offline_done))
note "$SOCKET_N accounts through the admin socket: $SOCKET_S s"
"$TERN" users --config "$CONFIG" >"$WORK/users.txt" 2>/dev/null || true
[ "$(grep -c "@$DOMAIN" "$WORK/users.txt")" -eq "$ACCOUNTS" ] ||
  die "expected $ACCOUNTS accounts, the server lists $(grep -c "@$DOMAIN" "$WORK/users.txt")"
# A fresh server for the soak: nothing in its memory but what the soak puts there.
stop_tern
start_tern tern.log
note "tern pid $TERN_PID on 127.0.0.1:$PORT; ulimit -n $NOFILE"

# ---------------------------------------------------------------- sampling
mkdir -p "$WORK/reports"
python3 "$HERE/soak_report.py" sample --pid "$TERN_PID" --port "$PORT" --interval "$INTERVAL" \
  --out "$WORK/samples.jsonl" --stop "$WORK/stop-sampling" &
PIDS+=($!)
sleep "$(python3 -c "print(min(3 * $INTERVAL, 15))")" # a baseline of a few samples

# ---------------------------------------------------------------- load
COMMON=(--addr "127.0.0.1:$PORT" --domain "$DOMAIN" --password "$PASSWORD" --ca "$CA"
  --server-pid "$TERN_PID" --label soak)
# One tern-load run: reports/NAME.json (stdout), NAME.err, NAME.rc (exit status).
# In the background loops below, a TERM kills the tern-load child too.
run_load() {
  local name="$1"
  shift
  printf '%s\t%s\n' "$name" "$LOAD $*" >>"$WORK/commands.txt"
  local child rc=0
  "$LOAD" "$@" >"$WORK/reports/$name.json" 2>"$WORK/reports/$name.err" &
  child=$!
  trap 'kill $child 2>/dev/null; exit 143' TERM
  wait "$child" || rc=$?
  trap - TERM
  echo "$rc" >"$WORK/reports/$name.rc"
  if [ "$rc" -ne 0 ]; then
    note "tern-load $name exited $rc: $(tail -n 2 "$WORK/reports/$name.err" | tr '\n' ' ')"
  fi
}

# The idle connections outlast the churn window by this much (the last churn runs drain),
# counting from the end of their ramp (then one sample, then the churn starts).
TAIL=$((SECONDS_SOAK < 60 ? 15 : 30))
HOLD=$(python3 -c "import math; print(math.ceil($SECONDS_SOAK + $INTERVAL + 1 + $TAIL))")
# Waits until CONNECTIONS are established on the server port and every file in READY
# exists (the generators' --ready-file: their logins finished); dies if the generators in
# IDLE_LOOPS end first or after ramp_limit seconds. Sets `held`.
ramp_limit=$(python3 -c "import math; print(math.ceil($CONNECTIONS / $RAMP_RATE) + 120)")
READY=()
wait_for_ramp() {
  local deadline=$(($(date +%s) + ramp_limit)) alive pid f
  while :; do
    held=$(python3 "$HERE/soak_report.py" conns --port "$PORT")
    if [ "$held" -ge "$CONNECTIONS" ]; then
      alive=1
      for f in "${READY[@]}"; do [ -e "$f" ] || alive=0; done
      [ "$alive" = 0 ] || break
    fi
    alive=0
    for pid in "${IDLE_LOOPS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 1 ] || die "the idle generators ended during the $1 ($held connections up)"
    [ "$(date +%s)" -lt "$deadline" ] ||
      die "only $held of $CONNECTIONS idle connections up after $ramp_limit s ($1)"
    sleep 1
  done
}
IDLE_LOOPS=()
event ramp_start
for g in $(seq 0 $((IDLE_GENERATORS - 1))); do
  n=${IDLE_PER_GEN[$g]}
  rate=$(python3 -c "print($RAMP_RATE / $IDLE_GENERATORS)")
  run_load "idle-$g" idle "${COMMON[@]}" --users "$n" --user-prefix "i${g}x" \
    --key-cache "$WORK/keys-idle-$g.json" --connections "$n" --ramp-rate "$rate" \
    --hold "$HOLD" &
  PIDS+=($!)
  IDLE_LOOPS+=($!)
done
note "ramp: $CONNECTIONS idle connections at $RAMP_RATE/s"
wait_for_ramp ramp
event ramp_done
note "$held connections held; churn for $SECONDS_SOAK s after the next sample"
# A sample of the idle connections alone (memory per held connection).
sleep "$(python3 -c "print($INTERVAL + 0.5)")"

# Churn: each scenario in a loop of runs of at most ITERATION seconds until the end.
event churn_start
CHURN_END=$(($(date +%s) + SECONDS_SOAK))
churn_loop() {
  local scenario="$1"
  shift
  local n=0 left d
  while :; do
    left=$((CHURN_END - $(date +%s)))
    [ "$left" -ge 3 ] || break
    d=$((left < ITERATION ? left : ITERATION))
    run_load "$scenario-$(printf %03d "$n")" "$scenario" "${COMMON[@]}" --duration "$d" "$@"
    n=$((n + 1))
  done
}
CHURN_LOOPS=()
if [ "$LOGIN_RATE" != 0 ]; then
  churn_loop logins --users "$LOGIN_USERS" --user-prefix l --key-cache "$WORK/keys-l.json" \
    --rate "$LOGIN_RATE" &
  CHURN_LOOPS+=($!)
fi
if [ "$PAIRS" -gt 0 ]; then
  churn_loop messages --users $((2 * PAIRS)) --user-prefix m --key-cache "$WORK/keys-m.json" \
    --pairs "$PAIRS" --rate "$MSG_RATE" &
  CHURN_LOOPS+=($!)
fi
if [ "$EXT_CLIENTS" -gt 0 ]; then
  churn_loop extdisco --users "$EXT_CLIENTS" --user-prefix e --key-cache "$WORK/keys-e.json" \
    --clients "$EXT_CLIENTS" --rate "$EXT_RATE" --turn-host "$TURN_HOST" &
  CHURN_LOOPS+=($!)
fi
PIDS+=("${CHURN_LOOPS[@]}")
for pid in "${CHURN_LOOPS[@]}"; do wait "$pid" || true; done
event churn_end
note "churn over; waiting for the idle generators (they close their connections)"
for pid in "${IDLE_LOOPS[@]}"; do wait "$pid" || true; done
event load_end
note "load over; settling for $SETTLE s"
sleep "$SETTLE"
event settled

# ---------------------------------------------------------------- later ramps
# Ramps 2..RAMPS on the same server: the same idle accounts, generators and rate, held
# RAMP_HOLD seconds once all are up (at least one sample), then closed (the script removes
# the generators' ready files), then SETTLE seconds. Does a ramp reuse the memory the
# previous one left, and is it given back?
HOLD_K=$(python3 -c "print(max($RAMP_HOLD, $INTERVAL + 0.5))")
for k in $(seq 2 "$RAMPS"); do
  # A sample of the settled server before the next ramp starts.
  sleep "$(python3 -c "print($INTERVAL + 0.5)")"
  IDLE_LOOPS=()
  READY=()
  event "ramp${k}_start"
  for g in $(seq 0 $((IDLE_GENERATORS - 1))); do
    n=${IDLE_PER_GEN[$g]}
    rate=$(python3 -c "print($RAMP_RATE / $IDLE_GENERATORS)")
    READY+=("$WORK/ready-ramp$k-$g")
    # The hold ends when the script removes the ready file; the limit is a safety net.
    run_load "idle-r${k}g$g" idle "${COMMON[@]}" --users "$n" --user-prefix "i${g}x" \
      --key-cache "$WORK/keys-idle-$g.json" --connections "$n" --ramp-rate "$rate" \
      --hold "$(python3 -c "print(round($HOLD_K + $ramp_limit + 60))")" \
      --ready-file "$WORK/ready-ramp$k-$g" &
    PIDS+=($!)
    IDLE_LOOPS+=($!)
  done
  note "ramp $k of $RAMPS: $CONNECTIONS idle connections at $RAMP_RATE/s"
  wait_for_ramp "ramp $k"
  event "ramp${k}_done"
  note "$held connections held; closing them in $HOLD_K s"
  sleep "$HOLD_K"
  event "ramp${k}_hold_end"
  rm -f "${READY[@]}"
  for pid in "${IDLE_LOOPS[@]}"; do wait "$pid" || true; done
  event "ramp${k}_closed"
  note "ramp $k closed; settling for $SETTLE s"
  sleep "$SETTLE"
  event "ramp${k}_settled"
done
# One last sample now, then the sampler stops.
touch "$WORK/stop-sampling"
TERN_ALIVE=0
kill -0 "$TERN_PID" 2>/dev/null && TERN_ALIVE=1
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()
stop_tern

# ---------------------------------------------------------------- report
SOAK_SETTINGS="$(python3 - "$@" <<EOF
import json, os, platform
def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()
print(json.dumps({
    "connections": $CONNECTIONS, "seconds": $SECONDS_SOAK, "ramp_rate": $RAMP_RATE,
    "idle_generators": $IDLE_GENERATORS, "iteration_s": $ITERATION,
    "login_rate": $LOGIN_RATE, "login_users": $LOGIN_USERS, "pairs": $PAIRS,
    "msg_rate": $MSG_RATE, "ext_clients": $EXT_CLIENTS, "ext_rate": $EXT_RATE,
    "interval_s": $INTERVAL, "settle_s": $SETTLE, "fd_slack": $FD_SLACK,
    "rss_drift_max_pct": $RSS_DRIFT_PCT, "accounts": $ACCOUNTS,
    "ramps": $RAMPS, "ramp_hold_s": $HOLD_K,
    "accounts_note": "$offline_done with tern adduser offline, one process each, in $OFFLINE_S s; "
                     "$SOCKET_N through the running server's admin socket in $SOCKET_S s",
    "offline_adduser_s": $OFFLINE_S, "offline_adduser_n": $offline_done,
    "socket_adduser_s": $SOCKET_S, "socket_adduser_n": $SOCKET_N,
    "nofile": $NOFILE, "rust_log": "$RUST_LOG_SERVER", "tern_alive_at_end": "$TERN_ALIVE",
    "machine": f"{os.cpu_count()} CPU ({cpu()}), {platform.system()} {platform.release()}, "
               f"ulimit -n $NOFILE, local ports $PORT_LOW-$PORT_HIGH",
    "config": open("$CONFIG").read(),
    "commands": open("$WORK/commands.txt").read().splitlines(),
}))
EOF
)"
SOAK_STAMP="$(date -u +%Y-%m-%dT%H:%MZ)"
export WORK OUT SOAK_SETTINGS SOAK_COMMAND="$COMMAND" SOAK_COMMIT SOAK_STAMP
status=0
python3 "$HERE/soak_report.py" report || status=$?
note "results in $OUT (soak.md, soak.json, soak.svg)"
exit "$status"
