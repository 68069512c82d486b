#!/usr/bin/env bash
# Interop tests: Tern against real clients nobody on the team wrote.
#
#   bash tests/interop/run.sh
#
# Installs (idempotently) slixmpp 1.17.0 in tests/interop/.venv, @xmpp/client 0.14.0 in
# tests/interop/node_modules (from package-lock.json) and Debian's go-sendxmpp; builds
# `tern` (debug); starts it on two free loopback ports with a throwaway config, data and
# certificate folder (the default modules plus external_services, XEP-0215, with four
# STUN/TURN services and a TURN REST secret); adds accounts; runs slixmpp_check.py and
# xmppjs_check.mjs (logins, messages, server queries, XEP-0215 through raw IQs), the
# RFC 6121 scenario between a slixmpp client (erin) and an xmpp.js client (frank):
# roster, subscriptions both ways, presence, a clean and an abrupt disconnect, an
# offline message (XEP-0160); XEP-0198 stream management with slixmpp (grace, numbered
# messages from heidi) and with xmpp.js (ivan, from judy): the TCP connection cut under
# the client, resumption, every message delivered; XEP-0280 carbons with two slixmpp
# resources of mallory and a third party (niaj); go-sendxmpp (PLAIN over STARTTLS and
# over direct TLS, received by a slixmpp and an xmpp.js listener); and coturn_check.sh
# (its own Tern, and `tern check turn` against its coturn).
# One PASS/FAIL line per check, then `N passed, M failed`.
# Exit status 1 if anything failed. On failure the work folder (tern.log with
# RUST_LOG=debug, slixmpp.log and xmppjs.log with the XML exchanged, go-sendxmpp
# debug output) is kept and its path printed.
#
# Environment: TERN_INTEROP_KEEP=1 keeps the work folder even when all passed;
# TERN_BIN=path uses that tern binary instead of building one;
# RUST_LOG overrides the server's log filter (default tern=debug,info).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../bench/lib/tern-config.sh
. "$ROOT/bench/lib/tern-config.sh"
VENV="$HERE/.venv"
DOMAIN=localhost

PASSES=0
FAILS=0
pass() { PASSES=$((PASSES + 1)); echo "PASS $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL $*"; }
note() { echo "---- $*"; }

summary() {
  echo "$PASSES passed, $FAILS failed"
}

# ---------------------------------------------------------------- dependencies
note "dependencies"
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import slixmpp, sys; sys.exit(slixmpp.__version__ != "1.17.0")' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check slixmpp==1.17.0
fi
echo "slixmpp $("$VENV/bin/python" -c 'import slixmpp; print(slixmpp.__version__)')"

xmppjs_version() {
  node -e 'console.log(require(process.argv[1]).version)' "$HERE/node_modules/@xmpp/client/package.json" 2>/dev/null || true
}
if [ "$(xmppjs_version)" != "0.14.0" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "node $(node --version), @xmpp/client $(xmppjs_version)"

if ! command -v go-sendxmpp >/dev/null 2>&1; then
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q go-sendxmpp >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q go-sendxmpp >/dev/null
  fi
fi
echo "go-sendxmpp $(dpkg-query -W -f='${Version}' go-sendxmpp 2>/dev/null || echo '?')"

# ---------------------------------------------------------------- build
if [ -n "${TERN_BIN:-}" ]; then
  note "using TERN_BIN=$TERN_BIN (no build)"
  TERN="$TERN_BIN"
else
  note "cargo build --bin tern"
  if ! (cd "$ROOT" && cargo build --quiet --bin tern); then
    fail "setup cargo build --bin tern"
    summary
    exit 1
  fi
  TERN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tern"
fi

# ---------------------------------------------------------------- server
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-interop.XXXXXX")"
TERN_PID=""
BG_PIDS=()
cleanup() {
  local status=$?
  for pid in "${BG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [ -n "$TERN_PID" ]; then
    kill "$TERN_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$TERN_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$TERN_PID" 2>/dev/null || true
    wait "$TERN_PID" 2>/dev/null || true
  fi
  if [ "$FAILS" -gt 0 ] || [ "$status" -ne 0 ] || [ "${TERN_INTEROP_KEEP:-0}" = 1 ]; then
    echo "logs kept in $WORK (tern.log, slixmpp.log, xmppjs.log, slixmpp-rfc6121.log, xmppjs-rfc6121.log, rfc6121-sync/, slixmpp-sm.log, xmppjs-sm.log, slixmpp-carbons.log, go-sendxmpp-*.log)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PORT_STARTTLS PORT_TLS < <(free_ports 2)

# XEP-0215: what slixmpp_check.py and xmppjs_check.mjs expect (their EXTDISCO_SERVICES).
EXTDISCO_HOST=turn.example.org
EXTDISCO_SECRET=interop-secret
EXTDISCO_TTL=600

# The default modules (roster, presence, offline, ...) on every host, plus external_services;
# the server's default limits.
write_tern_config --domain "$DOMAIN" --c2s "$PORT_STARTTLS" --direct-tls "$PORT_TLS" \
  --host-modules external_services \
  --turn-host "$EXTDISCO_HOST" --turn-secret "$EXTDISCO_SECRET" --turn-ttl "$EXTDISCO_TTL" \
  >"$WORK/tern.toml"
# It holds the TURN secret: owner only (Tern warns about a world-readable one).
chmod 600 "$WORK/tern.toml"
CONFIG="$WORK/tern.toml"
CA="$WORK/certs/$DOMAIN.crt"

ALICE_PW="alice-Pw-$RANDOM$RANDOM"
BOB_PW="bob-Pw-$RANDOM$RANDOM"
CAROL_PW="carol-Pw-$RANDOM$RANDOM"
DAVE_PW="dave-Pw-$RANDOM$RANDOM"
ERIN_PW="erin-Pw-$RANDOM$RANDOM"
FRANK_PW="frank-Pw-$RANDOM$RANDOM"
GRACE_PW="grace-Pw-$RANDOM$RANDOM"
HEIDI_PW="heidi-Pw-$RANDOM$RANDOM"
IVAN_PW="ivan-Pw-$RANDOM$RANDOM"
JUDY_PW="judy-Pw-$RANDOM$RANDOM"
MALLORY_PW="mallory-Pw-$RANDOM$RANDOM"
NIAJ_PW="niaj-Pw-$RANDOM$RANDOM"

note "server on 127.0.0.1:$PORT_STARTTLS (STARTTLS) and 127.0.0.1:$PORT_TLS (direct TLS), work folder $WORK"

# dave is created while the server is stopped (offline path), the others through the
# admin socket of the running server.
if "$TERN" adduser "dave@$DOMAIN" --password "$DAVE_PW" --config "$CONFIG" >"$WORK/adduser-dave.log" 2>&1; then
  pass "setup adduser dave (server not running)"
else
  fail "setup adduser dave (server not running): $(tail -n 3 "$WORK/adduser-dave.log")"
fi

# On one CPU, as in the benchmarks, so that these clients meet the current-thread
# scheduler Tern picks there (checked below); coturn_check.sh runs it unpinned.
PIN=()
command -v taskset >/dev/null 2>&1 && PIN=(taskset -c 0)
RUST_LOG="${RUST_LOG:-tern=debug,info}" "${PIN[@]}" "$TERN" run --config "$CONFIG" >"$WORK/tern.log" 2>&1 &
TERN_PID=$!

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=0
for _ in $(seq 1 150); do
  if ! kill -0 "$TERN_PID" 2>/dev/null; then
    break
  fi
  if port_open "$PORT_STARTTLS" && port_open "$PORT_TLS" && [ -s "$CA" ]; then
    started=1
    break
  fi
  sleep 0.1
done
if [ "$started" = 1 ]; then
  pass "setup tern run listening on both ports, self-signed certificate at certs/$DOMAIN.crt"
else
  fail "setup tern run did not start listening within 15 s; last log lines:"
  tail -n 30 "$WORK/tern.log" | sed 's/^/    /'
  summary
  exit 1
fi

for u in alice:"$ALICE_PW" bob:"$BOB_PW" carol:"$CAROL_PW" erin:"$ERIN_PW" frank:"$FRANK_PW" \
  grace:"$GRACE_PW" heidi:"$HEIDI_PW" ivan:"$IVAN_PW" judy:"$JUDY_PW" mallory:"$MALLORY_PW" \
  niaj:"$NIAJ_PW"; do
  name="${u%%:*}"
  pw="${u#*:}"
  if timeout 20 "$TERN" adduser "$name@$DOMAIN" --password "$pw" --config "$CONFIG" >"$WORK/adduser-$name.log" 2>&1; then
    pass "setup adduser $name (through the admin socket of the running server)"
  else
    fail "setup adduser $name (running server): $(tail -n 3 "$WORK/adduser-$name.log")"
  fi
done

# Echoes a client's output file, counting its PASS/FAIL lines; a non-zero exit status
# without any FAIL line is a failure of its own.
count_output() {
  local name="$1" out="$2" rc="$3"
  while IFS= read -r line; do
    case "$line" in
      PASS\ *) PASSES=$((PASSES + 1)); echo "$line" ;;
      FAIL\ *) FAILS=$((FAILS + 1)); echo "$line" ;;
      *) echo "    $line" ;;
    esac
  done <"$out"
  if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$out"; then
    fail "$name exited with status $rc without reporting a failure"
  fi
}

# Runs a client script, echoing its lines and counting its PASS/FAIL lines.
run_client() {
  local name="$1"
  shift
  local out="$WORK/$name.out"
  local rc=0
  timeout 150 "$@" >"$out" 2>&1 || rc=$?
  count_output "$name" "$out" "$rc"
}

# ---------------------------------------------------------------- slixmpp
note "slixmpp"
run_client slixmpp "$VENV/bin/python" "$HERE/slixmpp_check.py" \
  --ca "$CA" --log "$WORK/slixmpp.log" --deadline 120 \
  check --starttls-port "$PORT_STARTTLS" --tls-port "$PORT_TLS" \
  --alice "alice@$DOMAIN" --alice-password "$ALICE_PW" \
  --bob "bob@$DOMAIN" --bob-password "$BOB_PW" \
  --extdisco-host "$EXTDISCO_HOST" --extdisco-secret "$EXTDISCO_SECRET" --extdisco-ttl "$EXTDISCO_TTL"

# ---------------------------------------------------------------- xmpp.js
note "xmpp.js"
run_client xmppjs env NODE_EXTRA_CA_CERTS="$CA" node "$HERE/xmppjs_check.mjs" check \
  --starttls-port "$PORT_STARTTLS" --tls-port "$PORT_TLS" --domain "$DOMAIN" \
  --alice alice --alice-password "$ALICE_PW" --bob bob --bob-password "$BOB_PW" \
  --extdisco-host "$EXTDISCO_HOST" --extdisco-secret "$EXTDISCO_SECRET" --extdisco-ttl "$EXTDISCO_TTL" \
  --log "$WORK/xmppjs.log" --deadline 120

# ---------------------------------------------------------------- RFC 6121: slixmpp <-> xmpp.js
# erin (slixmpp, STARTTLS) and frank (xmpp.js, direct TLS) run at the same time and meet
# through files in $WORK/rfc6121-sync (steps in slixmpp_check.py's run_rfc6121). Each has
# its own deadline (100 s) under a hard `timeout`.
note "RFC 6121: slixmpp (erin) <-> xmpp.js (frank)"
SYNC="$WORK/rfc6121-sync"
mkdir -p "$SYNC"
NODE_EXTRA_CA_CERTS="$CA" timeout 130 node "$HERE/xmppjs_check.mjs" rfc6121 \
  --service "xmpps://$DOMAIN:$PORT_TLS" --domain "$DOMAIN" --user frank --password "$FRANK_PW" \
  --peer "erin@$DOMAIN" --sync "$SYNC" --log "$WORK/xmppjs-rfc6121.log" --deadline 100 \
  >"$WORK/rfc6121-xmppjs.out" 2>&1 &
FRANK_PID=$!
BG_PIDS+=("$FRANK_PID")
erin_rc=0
timeout 130 "$VENV/bin/python" "$HERE/slixmpp_check.py" --ca "$CA" --log "$WORK/slixmpp-rfc6121.log" \
  --deadline 100 rfc6121 --port "$PORT_STARTTLS" --jid "erin@$DOMAIN" --password "$ERIN_PW" \
  --peer "frank@$DOMAIN" --sync "$SYNC" >"$WORK/rfc6121-slixmpp.out" 2>&1 || erin_rc=$?
frank_rc=0
wait "$FRANK_PID" || frank_rc=$?
echo "    [slixmpp, erin]"
count_output rfc6121-slixmpp "$WORK/rfc6121-slixmpp.out" "$erin_rc"
echo "    [xmpp.js, frank]"
count_output rfc6121-xmppjs "$WORK/rfc6121-xmppjs.out" "$frank_rc"

# ---------------------------------------------------------------- XEP-0198 stream management
# The TCP connection is cut under the client (slixmpp: shutdown(SHUT_RDWR) of the socket
# below TLS; xmpp.js: its TLSSocket destroyed) while another account sends it 20 numbered
# messages before, at and during the cut and after resumption; the client reconnects and
# resumes; every number must arrive (duplicates allowed and reported, as are the resent
# stanzas).
note "XEP-0198 stream management: slixmpp (grace, messages from heidi)"
run_client slixmpp-sm "$VENV/bin/python" "$HERE/slixmpp_check.py" \
  --ca "$CA" --log "$WORK/slixmpp-sm.log" --deadline 60 \
  sm --port "$PORT_STARTTLS" --jid "grace@$DOMAIN" --password "$GRACE_PW" \
  --peer "heidi@$DOMAIN" --peer-password "$HEIDI_PW" --count 20

note "XEP-0198 stream management: xmpp.js (ivan, messages from judy)"
run_client xmppjs-sm env NODE_EXTRA_CA_CERTS="$CA" node "$HERE/xmppjs_check.mjs" sm \
  --service "xmpps://$DOMAIN:$PORT_TLS" --domain "$DOMAIN" \
  --user ivan --password "$IVAN_PW" --peer judy --peer-password "$JUDY_PW" --count 20 \
  --log "$WORK/xmppjs-sm.log" --deadline 60

# ---------------------------------------------------------------- XEP-0280 carbons
note "XEP-0280 carbons: slixmpp (mallory's resources A and B, niaj)"
run_client slixmpp-carbons "$VENV/bin/python" "$HERE/slixmpp_check.py" \
  --ca "$CA" --log "$WORK/slixmpp-carbons.log" --deadline 60 \
  carbons --port "$PORT_STARTTLS" --jid "mallory@$DOMAIN" --password "$MALLORY_PW" \
  --peer "niaj@$DOMAIN" --peer-password "$NIAJ_PW"

# ---------------------------------------------------------------- go-sendxmpp
# Starts a listener (slixmpp or xmpp.js) as carol, waits for READY, sends with
# go-sendxmpp as dave, then requires the listener to report RECEIVED.
wait_ready() {
  local file="$1" pid="$2"
  for _ in $(seq 1 150); do
    grep -q '^READY ' "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

go_sendxmpp_check() {
  local label="$1" listener="$2" port="$3" tls_flag="$4"
  local body
  body="go-sendxmpp $label $RANDOM$RANDOM"
  local lout="$WORK/go-sendxmpp-$label-listener.out"
  local slog="$WORK/go-sendxmpp-$label.log"
  local lpid
  if [ "$listener" = slixmpp ]; then
    timeout 60 "$VENV/bin/python" "$HERE/slixmpp_check.py" --ca "$CA" \
      --log "$WORK/slixmpp-listener-$label.log" --deadline 50 \
      listen --port "$PORT_STARTTLS" --jid "carol@$DOMAIN" --password "$CAROL_PW" \
      --expect-body "$body" --expect-from "dave@$DOMAIN" --timeout 30 >"$lout" 2>&1 &
  else
    NODE_EXTRA_CA_CERTS="$CA" timeout 60 node "$HERE/xmppjs_check.mjs" listen \
      --service "xmpps://$DOMAIN:$PORT_TLS" --domain "$DOMAIN" --jid "carol@$DOMAIN" \
      --password "$CAROL_PW" --expect-body "$body" --expect-from "dave@$DOMAIN" --timeout 30 \
      --log "$WORK/xmppjs-listener-$label.log" --deadline 50 >"$lout" 2>&1 &
  fi
  lpid=$!
  BG_PIDS+=("$lpid")
  if ! wait_ready "$lout" "$lpid"; then
    fail "go-sendxmpp $label: $listener listener did not log in: $(tail -n 3 "$lout" | tr '\n' ' ')"
    return
  fi
  local src=0
  # -f: an empty config file, so nothing from the user's ~/.config is used.
  : >"$WORK/sendxmpprc"
  echo "$body" | SSL_CERT_FILE="$CA" HOME="$WORK" timeout 40 go-sendxmpp -d -f "$WORK/sendxmpprc" \
    -u "dave@$DOMAIN" -p "$DAVE_PW" -j "$DOMAIN:$port" $tls_flag --timeout 15 \
    "carol@$DOMAIN" >"$slog" 2>&1 || src=$?
  if [ "$src" -eq 0 ]; then
    pass "go-sendxmpp $label plain send (exit 0)"
  else
    fail "go-sendxmpp $label plain send: exit $src: $(grep -v '^\s*$' "$slog" | tail -n 3 | tr '\n' ' ')"
    # Nothing will arrive: give the listener 2 s for a stray message, then stop it.
    sleep 2
    kill "$lpid" 2>/dev/null || true
  fi
  local lrc=0
  wait "$lpid" || lrc=$?
  if [ "$lrc" -eq 0 ] && grep -q '^RECEIVED' "$lout"; then
    pass "go-sendxmpp $label message received by $listener ($(grep '^GOT ' "$lout" | tail -n 1))"
  else
    local why="exit $lrc"
    [ "$src" -eq 0 ] || why="go-sendxmpp failed, listener stopped"
    fail "go-sendxmpp $label message not received by $listener ($why): $(tail -n 3 "$lout" | tr '\n' ' ')"
  fi
}

note "go-sendxmpp"
go_sendxmpp_check starttls slixmpp "$PORT_STARTTLS" ""
go_sendxmpp_check direct-tls xmppjs "$PORT_TLS" "-t"

# ---------------------------------------------------------------- coturn (XEP-0215 TURN credentials on a real TURN server)
note "coturn"
run_client coturn bash "$HERE/coturn_check.sh" --tern "$TERN" --python "$VENV/bin/python"

# ---------------------------------------------------------------- server health
if kill -0 "$TERN_PID" 2>/dev/null; then
  pass "server still running after all clients"
else
  fail "server exited during the run; last log lines:"
  tail -n 30 "$WORK/tern.log" | sed 's/^/    /'
fi
# The choice is logged at debug: a RUST_LOG from the caller may hide it.
scheduler_line=$(grep -m1 'async runtime' "$WORK/tern.log" || true)
if [ "${#PIN[@]}" = 0 ]; then
  note "taskset missing: the one-CPU scheduler is not checked"
elif [ -z "$scheduler_line" ]; then
  note "RUST_LOG=${RUST_LOG:-} hides tern's debug lines: the one-CPU scheduler is not checked"
elif [[ "$scheduler_line" == *'scheduler="current-thread"'* ]]; then
  pass "server on one CPU runs the current-thread scheduler"
else
  fail "server on one CPU: $scheduler_line"
fi
panics=$(grep -c -i 'panicked' "$WORK/tern.log" || true)
if [ "$panics" = 0 ]; then
  pass "server log has no panic"
else
  fail "server log has $panics panic(s): $(grep -i -m1 'panicked' "$WORK/tern.log")"
fi

summary
[ "$FAILS" -eq 0 ]
