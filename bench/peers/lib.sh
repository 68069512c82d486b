# shellcheck shell=bash
# Helpers the peer drivers, bench/compare.sh and bench/startup_conditions.sh source (not run
# on their own).
# Every driver reads the same environment: PEER_DIR (its throwaway folder), PEER_PORT
# (its STARTTLS port), PEER_CERT / PEER_KEY (the shared ECDSA P-256 certificate),
# PEER_DOMAIN, PEER_USERS, PEER_PASSWORD, PEER_TURN_HOST, PEER_TURN_SECRET.

# free_ports and write_tern_config (Tern's config, shared with bench/run.sh and others).
# shellcheck source-path=SCRIPTDIR source=../lib/tern-config.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tern-config.sh"

# One self-signed ECDSA P-256 certificate for DOMAIN in DIR/DOMAIN.crt and .key: all
# three servers present the same one, so the TLS handshakes cost the same.
peer_cert() {
  local dir="$1" domain="$2"
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$dir/$domain.key" -out "$dir/$domain.crt" -subj "/CN=$domain" \
    -addext "subjectAltName=DNS:$domain" -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1
}

peer_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to SECONDS for PORT to accept connections; fails otherwise.
peer_wait_port() {
  local port="$1" seconds="$2"
  for _ in $(seq 1 $((seconds * 10))); do
    peer_port_open "$port" && return 0
    sleep 0.1
  done
  return 1
}

# Copies TEMPLATE to OUT replacing every @NAME@ with the value of $NAME (only the
# upper-case names the template uses; an unset one is an error).
peer_render() {
  local template="$1" out="$2"
  python3 - "$template" "$out" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
def sub(m):
    name = m.group(1)
    if name not in os.environ:
        sys.exit(f"{sys.argv[1]}: @{name}@ is not set")
    return os.environ[name]
open(sys.argv[2], "w").write(re.sub(r"@([A-Z_]+)@", sub, text))
PY
}

# Whether PID still runs: an exited child its parent has not reaped yet (a zombie)
# does not count, so a stop command can wait on a process started by someone else.
peer_alive() {
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Sends SIGTERM to PID, waits up to SECONDS for it to go, then SIGKILL.
peer_kill() {
  local pid="$1" seconds="${2:-10}"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((seconds * 10))); do
    peer_alive "$pid" || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# The kernel's delay accounting, which tern-load startup's "waiting on the disk" needs: off
# by default since Linux 5.14 (it reads the clock at every block I/O wait), so the scripts
# turn it on around their start-ups where this user may, and back off after (call
# delay_accounting_back from the EXIT trap too: it only undoes what this script did).
DELAYACCT_RESTORE=0
delay_accounting_on() {
  if [ "$(cat /proc/sys/kernel/task_delayacct 2>/dev/null)" = 0 ] &&
    { echo 1 >/proc/sys/kernel/task_delayacct; } 2>/dev/null; then
    DELAYACCT_RESTORE=1
  fi
}
delay_accounting_back() {
  if [ "$DELAYACCT_RESTORE" = 1 ]; then
    { echo 0 >/proc/sys/kernel/task_delayacct; } 2>/dev/null || true
    DELAYACCT_RESTORE=0
  fi
}
