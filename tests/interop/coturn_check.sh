#!/usr/bin/env bash
# coturn interop: the TURN credentials Tern hands out over XEP-0215 work on a real coturn.
#
#   bash tests/interop/coturn_check.sh [--tern PATH] [--python PATH]
#
# run.sh calls it with its tern binary and the slixmpp venv's python; alone, it builds
# tern (debug) and uses tests/interop/.venv (created with slixmpp 1.17.0 if missing).
# Installs coturn with apt when `turnserver` is missing. Starts coturn on free loopback
# ports (use-auth-secret, static-auth-secret=S1, realm localhost) and a Tern whose
# external_services module points at it (secret S1, ttl 600; stun/udp, turn/udp,
# turn/tcp); logs in a slixmpp client that asks for the services over XEP-0215
# (`<services xmlns='urn:xmpp:extdisco:2'/>`); then proves with turnutils_uclient that
# coturn accepts Tern's credentials over UDP and TCP, and refuses a wrong password and an
# expired TURN REST credential; then runs `tern check turn` with Tern's config (exit 0,
# `ok: binding` for stun, `ok: allocated relay` for turn/udp and turn/tcp) and with a copy
# whose secret differs from coturn's (exit 1, `401 Unauthorized` for both turn services).
# One `PASS coturn ...`/`FAIL coturn ...` line per check; exit 1 if any failed. Work
# folder (coturn.log, tern.log, uclient-*.log, check-turn*.out) kept on failure or with
# TERN_INTEROP_KEEP=1. Takes about 15 s once everything is installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TERN=""
PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tern) TERN="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    *) echo "usage: $0 [--tern PATH] [--python PATH]" >&2; exit 2 ;;
  esac
done

DOMAIN=localhost
SECRET=S1
PASSES=0
FAILS=0
pass() { PASSES=$((PASSES + 1)); echo "PASS coturn $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL coturn $*"; }
note() { echo "---- $*"; }
summary() { echo "---- coturn checks done ($PASSES passed, $FAILS failed)"; }

# ---------------------------------------------------------------- dependencies
if ! command -v turnserver >/dev/null 2>&1 || ! command -v turnutils_uclient >/dev/null 2>&1; then
  note "installing coturn"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q coturn >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q coturn >/dev/null 2>&1 || true
  fi
fi
if ! command -v turnserver >/dev/null 2>&1 || ! command -v turnutils_uclient >/dev/null 2>&1; then
  fail "setup: coturn (turnserver, turnutils_uclient) is not installed and apt-get install coturn failed"
  summary
  exit 1
fi

if [ -z "$PY" ]; then
  PY="$HERE/.venv/bin/python"
  if ! [ -x "$PY" ] || ! "$PY" -c 'import slixmpp' 2>/dev/null; then
    python3 -m venv "$HERE/.venv"
    "$HERE/.venv/bin/pip" install --quiet --disable-pip-version-check slixmpp==1.17.0
  fi
fi
if [ -z "$TERN" ]; then
  if ! (cd "$ROOT" && cargo build --quiet --bin tern); then
    fail "setup: cargo build --bin tern"
    summary
    exit 1
  fi
  TERN="$ROOT/target/debug/tern"
fi

# ---------------------------------------------------------------- work folder, cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tern-coturn.XXXXXX")"
COTURN_PID=""
TERN_PID=""
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  stop_pid "$TERN_PID"
  # coturn writes its own pid file; it is the process we started (no daemon mode).
  if [ -s "$WORK/turnserver.pid" ] && [ "$(cat "$WORK/turnserver.pid")" != "$COTURN_PID" ]; then
    stop_pid "$(cat "$WORK/turnserver.pid")"
  fi
  stop_pid "$COTURN_PID"
  if [ "$FAILS" -gt 0 ] || [ "$status" -ne 0 ] || [ "${TERN_INTEROP_KEEP:-0}" = 1 ]; then
    echo "coturn logs kept in $WORK (coturn.log, tern.log, xep0215.out, uclient-*.log, check-turn*.out)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports: TURN (the same number free for UDP and TCP), the c2s listener, and a
# relay range that nothing else uses.
read -r TURN_PORT C2S_PORT RELAY_MIN < <(python3 - <<'EOF'
import random, socket

def free_both():
    while True:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()

turn = free_both()
s = socket.socket()
s.bind(("127.0.0.1", 0))
c2s = s.getsockname()[1]
s.close()
base = random.randrange(20000, 30000, 100)
print(turn, c2s, base)
EOF
)
RELAY_MAX=$((RELAY_MIN + 99))

# ---------------------------------------------------------------- coturn
cat >"$WORK/turnserver.conf" <<EOF
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=$TURN_PORT
min-port=$RELAY_MIN
max-port=$RELAY_MAX
use-auth-secret
static-auth-secret=$SECRET
realm=$DOMAIN
no-tls
no-dtls
no-cli
allow-loopback-peers
fingerprint
verbose
log-file=stdout
pidfile=$WORK/turnserver.pid
userdb=$WORK/turndb
EOF
note "coturn on 127.0.0.1:$TURN_PORT (udp+tcp), relay ports $RELAY_MIN-$RELAY_MAX, work folder $WORK"
turnserver -c "$WORK/turnserver.conf" >"$WORK/coturn.log" 2>&1 &
COTURN_PID=$!

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=0
for _ in $(seq 1 100); do
  kill -0 "$COTURN_PID" 2>/dev/null || break
  if port_open "$TURN_PORT" && grep -q 'Total General servers' "$WORK/coturn.log"; then
    started=1
    break
  fi
  sleep 0.1
done
if [ "$started" = 1 ]; then
  pass "setup: $(grep -m1 -o 'Coturn-[^ ]*' "$WORK/coturn.log" || echo coturn) listening on 127.0.0.1:$TURN_PORT"
else
  fail "setup: coturn did not start within 10 s; last log lines:"
  tail -n 20 "$WORK/coturn.log" | sed 's/^/    /'
  summary
  exit 1
fi

# ---------------------------------------------------------------- tern
cat >"$WORK/tern.toml" <<EOF
data_dir = "data"
storage = "sled"
require_encryption = true
modules_enabled = ["disco", "external_services"]

[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
# Not tested here, and the default port (5223) may belong to another server.
c2s_direct_tls = []

[tls]
certs_dir = "certs"

[hosts.$DOMAIN]

[modules.external_services]
host = "127.0.0.1"
port = $TURN_PORT
secret = "$SECRET"
ttl = 600

[[modules.external_services.services]]
type = "stun"
transport = "udp"

[[modules.external_services.services]]
type = "turn"
transport = "udp"

[[modules.external_services.services]]
type = "turn"
transport = "tcp"
EOF
CONFIG="$WORK/tern.toml"
CA="$WORK/certs/$DOMAIN.crt"
ALICE_PW="alice-Pw-$RANDOM$RANDOM"

if ! "$TERN" adduser "alice@$DOMAIN" --password "$ALICE_PW" --config "$CONFIG" >"$WORK/adduser.log" 2>&1; then
  fail "setup: tern adduser alice: $(tail -n 3 "$WORK/adduser.log" | tr '\n' ' ')"
  summary
  exit 1
fi
RUST_LOG="${RUST_LOG:-tern=debug,info}" "$TERN" run --config "$CONFIG" >"$WORK/tern.log" 2>&1 &
TERN_PID=$!
started=0
for _ in $(seq 1 150); do
  kill -0 "$TERN_PID" 2>/dev/null || break
  if port_open "$C2S_PORT" && [ -s "$CA" ]; then
    started=1
    break
  fi
  sleep 0.1
done
if [ "$started" = 1 ]; then
  pass "setup: tern with external_services (secret, ttl 600) listening on 127.0.0.1:$C2S_PORT"
else
  fail "setup: tern did not start within 15 s; last log lines:"
  tail -n 20 "$WORK/tern.log" | sed 's/^/    /'
  summary
  exit 1
fi

# ---------------------------------------------------------------- XEP-0215 with slixmpp
# Prints one `SERVICE type transport host port username password restricted expires`
# line per <service/> ("-" for an absent attribute), or `ERROR ...`.
rc=0
timeout 30 "$PY" - "alice@$DOMAIN" "$ALICE_PW" "$C2S_PORT" "$CA" >"$WORK/xep0215.out" 2>"$WORK/xep0215.err" <<'EOF' || rc=$?
import asyncio
import sys
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

NS = "urn:xmpp:extdisco:2"
jid, password, port, ca = sys.argv[1:5]


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ca_certs = Path(ca)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.started = self.loop.create_future()
        self.failed = self.loop.create_future()
        self.add_event_handler("session_start", lambda _e: self.started.done() or self.started.set_result(True))
        self.add_event_handler("failed_auth", lambda _e: self.failed.done() or self.failed.set_result(True))


async def main():
    client = Client()
    client.connect("127.0.0.1", int(port))
    await asyncio.wait([client.started, client.failed], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if not client.started.done():
        print("ERROR login failed" + (" (SASL)" if client.failed.done() else " (no session within 10 s)"))
        return 1
    iq = client.make_iq_get(ito="localhost")
    iq.xml.append(ET.Element("{%s}services" % NS))
    try:
        reply = await iq.send(timeout=10)
    except IqError as e:
        print("ERROR services request answered with error %s" % e.iq["error"]["condition"])
        return 1
    except IqTimeout:
        print("ERROR services request: no answer within 10 s")
        return 1
    services = reply.xml.find("{%s}services" % NS)
    if services is None:
        print("ERROR reply without <services xmlns='%s'/>" % NS)
        return 1
    for s in services.findall("{%s}service" % NS):
        fields = [s.get(a) or "-" for a in ("type", "transport", "host", "port", "username", "password", "restricted", "expires")]
        print("SERVICE " + " ".join(fields))
    client.disconnect()
    return 0


sys.exit(asyncio.run(main()))
EOF
if grep -q '^ERROR' "$WORK/xep0215.out" || [ "$rc" -ne 0 ]; then
  fail "XEP-0215 services request (slixmpp): $(grep '^ERROR' "$WORK/xep0215.out" || tail -n 3 "$WORK/xep0215.err" | tr '\n' ' ') (exit $rc)"
  summary
  exit 1
fi
sed 's/^/    /' "$WORK/xep0215.out" | sed -E 's/^(    SERVICE ([^ ]+ ){5})[^ -][^ ]*/\1<password>/'

# service TYPE TRANSPORT -> "host port username password restricted expires", or nothing
service() {
  awk -v t="$1" -v tr="$2" '$1 == "SERVICE" && $2 == t && $3 == tr { print $4, $5, $6, $7, $8, $9; exit }' "$WORK/xep0215.out"
}
missing=""
for s in "stun udp" "turn udp" "turn tcp"; do
  read -r host port _ <<<"$(service $s)" || true
  if [ "${host:-}" != 127.0.0.1 ] || [ "${port:-}" != "$TURN_PORT" ]; then
    missing="$missing ${s/ //}"
  fi
done
if [ -z "$missing" ]; then
  pass "XEP-0215 services (slixmpp): stun/udp, turn/udp, turn/tcp at 127.0.0.1:$TURN_PORT"
else
  fail "XEP-0215 services (slixmpp): missing or wrong host/port:$missing"
fi

read -r _ _ TURN_USER TURN_PASS TURN_RESTRICTED TURN_EXPIRES <<<"$(service turn udp)" || true
read -r _ _ TCP_USER TCP_PASS _ _ <<<"$(service turn tcp)" || true
TURN_USER="${TURN_USER:--}"
TCP_USER="${TCP_USER:--}"
# The TURN REST formula, computed here independently of Tern.
turn_rest_password() {
  python3 -c 'import base64, hashlib, hmac, sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha1).digest()).decode())' "$SECRET" "$1"
}
now=$(date +%s)
expiry="${TURN_USER%%:*}"
expires_unix=$(python3 -c 'import sys, datetime; print(int(datetime.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()))' "${TURN_EXPIRES:-x}" 2>/dev/null || echo "?")
if [ "$TURN_USER" = - ] || [ "${TURN_PASS:--}" = - ]; then
  fail "turn credentials: the turn/udp service has no username/password"
elif ! [[ "$expiry" =~ ^[0-9]+$ ]] || [ $((expiry - now)) -lt 540 ] || [ $((expiry - now)) -gt 660 ]; then
  fail "turn credentials: username $TURN_USER does not start with now + 600 s ($((now + 600)))"
elif [ "$(turn_rest_password "$TURN_USER")" != "$TURN_PASS" ]; then
  fail "turn credentials: password is not base64(HMAC-SHA1(secret, \"$TURN_USER\"))"
elif [ "$TURN_RESTRICTED" != true ] || [ "$expires_unix" != "$expiry" ]; then
  fail "turn credentials: restricted=$TURN_RESTRICTED expires=$TURN_EXPIRES, expected true and the username's expiry ($expiry)"
else
  pass "turn credentials: username $TURN_USER (expiry now+$((expiry - now)) s), password = base64(HMAC-SHA1(secret, username)), restricted, expires $TURN_EXPIRES"
fi

# ---------------------------------------------------------------- coturn says yes / no
read -r STUN_HOST STUN_PORT _ <<<"$(service stun udp)" || true
rc=0
timeout 5 turnutils_stunclient -p "${STUN_PORT:-0}" "${STUN_HOST:-127.0.0.1}" >"$WORK/stunclient.log" 2>&1 || rc=$?
if [ "$rc" -eq 0 ] && grep -q 'UDP reflexive addr' "$WORK/stunclient.log"; then
  pass "stun/udp: the advertised STUN service answers a Binding ($(grep -m1 -o 'UDP reflexive addr: [^ ]*' "$WORK/stunclient.log"))"
else
  fail "stun/udp: no Binding answer from ${STUN_HOST:-?}:${STUN_PORT:-?} (turnutils_stunclient exit $rc)"
fi

# Runs turnutils_uclient; sets UC_RC and UC_LOG (what coturn logged meanwhile).
uclient() {
  local label="$1"
  shift
  local mark
  mark=$(wc -l <"$WORK/coturn.log")
  UC_RC=0
  timeout 20 turnutils_uclient -y -n 3 -m 1 -l 64 "$@" -p "$TURN_PORT" 127.0.0.1 >"$WORK/uclient-$label.log" 2>&1 || UC_RC=$?
  sleep 0.2
  UC_LOG="$(tail -n +"$((mark + 1))" "$WORK/coturn.log")"
}
coturn_said() {
  # $1: username, $2: what coturn logs for it
  grep -F "user <$1>: incoming packet $2" <<<"$UC_LOG" >/dev/null
}
why() {
  echo "exit $UC_RC; uclient: $(grep -v '^\s*$' "$WORK/uclient-$1.log" | tail -n 2 | tr '\n' ' ')"
}

if [ "$TURN_USER" != - ]; then
  uclient udp -u "$TURN_USER" -w "$TURN_PASS"
  if [ "$UC_RC" -eq 0 ] && coturn_said "$TURN_USER" "ALLOCATE processed, success"; then
    pass "turn/udp: coturn allocates with Tern's credentials (turnutils_uclient exit 0; coturn: ALLOCATE processed, success)"
  else
    fail "turn/udp: coturn did not allocate with Tern's credentials ($(why udp))"
  fi
else
  fail "turn/udp: no credentials to try"
fi

if [ "$TCP_USER" != - ]; then
  uclient tcp -t -u "$TCP_USER" -w "$TCP_PASS"
  if [ "$UC_RC" -eq 0 ] && coturn_said "$TCP_USER" "ALLOCATE processed, success"; then
    pass "turn/tcp: coturn allocates with Tern's credentials over TCP (turnutils_uclient -t exit 0)"
  else
    fail "turn/tcp: coturn did not allocate with Tern's credentials over TCP ($(why tcp))"
  fi
else
  fail "turn/tcp: no credentials to try"
fi

if [ "$TURN_USER" != - ]; then
  uclient wrong -u "$TURN_USER" -w "not-the-password"
  if [ "$UC_RC" -ne 0 ] && coturn_said "$TURN_USER" "message processed, error 401"; then
    pass "wrong password refused (turnutils_uclient exit $UC_RC; coturn: error 401)"
  else
    fail "wrong password not refused as expected ($(why wrong))"
  fi
fi

EXPIRED_USER="$((now - 60)):x"
uclient expired -u "$EXPIRED_USER" -w "$(turn_rest_password "$EXPIRED_USER")"
if [ "$UC_RC" -ne 0 ] && coturn_said "$EXPIRED_USER" "message processed, error 401"; then
  pass "expired credential refused (username now-60 s, correctly signed; turnutils_uclient exit $UC_RC; coturn: error 401)"
else
  fail "expired credential not refused as expected ($(why expired))"
fi

# ---------------------------------------------------------------- tern check turn
# The same config (secret S1): every service passes. One line per service, then
# `N checked, M failed` on stdout (config warnings, on stderr, go to check-turn*.err);
# exit status 0.
rc=0
timeout 60 "$TERN" check turn --config "$CONFIG" >"$WORK/check-turn.out" 2>"$WORK/check-turn.err" || rc=$?
sed 's/^/    /' "$WORK/check-turn.out"
missing=""
grep -Eq "stun [^ ]+:$TURN_PORT udp: ok: binding" "$WORK/check-turn.out" || missing="$missing stun/udp(ok: binding)"
grep -Eq "turn [^ ]+:$TURN_PORT udp: ok: allocated relay" "$WORK/check-turn.out" || missing="$missing turn/udp(ok: allocated relay)"
grep -Eq "turn [^ ]+:$TURN_PORT tcp: ok: allocated relay" "$WORK/check-turn.out" || missing="$missing turn/tcp(ok: allocated relay)"
if [ "$rc" -eq 0 ] && [ -z "$missing" ] && grep -q '^3 checked, 0 failed$' "$WORK/check-turn.out"; then
  pass "tern check turn (secret $SECRET, as coturn's): exit 0, stun/udp ok: binding, turn/udp and turn/tcp ok: allocated relay, '3 checked, 0 failed'"
else
  fail "tern check turn (secret $SECRET, as coturn's): exit $rc, missing:${missing:- none}; last line: $(tail -n 1 "$WORK/check-turn.out")"
fi

# A config whose secret differs from coturn's: the TURN allocations are refused (401),
# exit status 1.
sed -E 's/^secret = .*/secret = "not-'"$SECRET"'"/' "$CONFIG" >"$WORK/tern-wrong-secret.toml"
if ! grep -q '^secret = "not-'"$SECRET"'"$' "$WORK/tern-wrong-secret.toml"; then
  fail "tern check turn with another secret: could not write the second config"
else
  rc=0
  timeout 60 "$TERN" check turn --config "$WORK/tern-wrong-secret.toml" >"$WORK/check-turn-wrong.out" 2>"$WORK/check-turn-wrong.err" || rc=$?
  sed 's/^/    /' "$WORK/check-turn-wrong.out"
  unauthorized=$(grep -Ec "turn [^ ]+:$TURN_PORT (udp|tcp): .*401 Unauthorized" "$WORK/check-turn-wrong.out" || true)
  if [ "$rc" -eq 1 ] && [ "$unauthorized" -eq 2 ] && grep -Eq '^3 checked, 2 failed$' "$WORK/check-turn-wrong.out"; then
    pass "tern check turn with another secret: exit 1, turn/udp and turn/tcp '401 Unauthorized', '3 checked, 2 failed'"
  else
    fail "tern check turn with another secret: exit $rc, $unauthorized turn line(s) with 401 Unauthorized (expected exit 1, 2 lines); last line: $(tail -n 1 "$WORK/check-turn-wrong.out")"
  fi
fi

if kill -0 "$TERN_PID" 2>/dev/null && ! grep -qi 'panicked' "$WORK/tern.log"; then
  pass "tern still running, no panic"
else
  fail "tern exited or panicked; last log lines: $(tail -n 5 "$WORK/tern.log" | tr '\n' ' ')"
fi

summary
[ "$FAILS" -eq 0 ]
