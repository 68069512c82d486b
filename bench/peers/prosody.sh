#!/usr/bin/env bash
# Prosody 0.12 driver for bench/compare.sh (environment: see lib.sh).
#   prosody.sh prepare   config in $PEER_DIR, accounts u0..u{N-1} (starts and stops
#                        Prosody once to create them through its admin shell)
#   prosody.sh command   prints the foreground command, one argument per line
#   prosody.sh stop PID  SIGTERM (Prosody shuts down cleanly on it)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
CFG="$PEER_DIR/prosody.cfg.lua"

command_line() {
  printf '%s\n' prosody --config "$CFG" -F
}

case "${1:-}" in
  prepare)
    command -v prosody >/dev/null || { echo "prosody is not installed (apt-get install prosody)" >&2; exit 1; }
    mkdir -p "$PEER_DIR/data"
    peer_render "$HERE/prosody.cfg.lua.in" "$CFG"
    mapfile -t cmd < <(command_line)
    "${cmd[@]}" >"$PEER_DIR/prepare.out" 2>&1 &
    pid=$!
    trap 'peer_kill $pid' EXIT
    peer_wait_port "$PEER_PORT" 30 || { echo "prosody did not start:" >&2; tail "$PEER_DIR/prosody.log" "$PEER_DIR/prepare.out" >&2; exit 1; }
    for _ in $(seq 1 50); do [ -S "$PEER_DIR/prosody.sock" ] && break; sleep 0.1; done
    # One Lua loop inside the server (Prosody's own user manager hashes the passwords):
    # one prosodyctl process per account would take a third of a second each.
    out="$(echo ">local um = require 'core.usermanager'; local n = 0; for i = 0, $((PEER_USERS - 1)) do if um.user_exists('u'..i, '$PEER_DOMAIN') or um.create_user('u'..i, '$PEER_PASSWORD', '$PEER_DOMAIN') then n = n + 1 end end; return n" |
      timeout 600 prosodyctl --config "$CFG" shell 2>&1)"
    if ! grep -q "$PEER_USERS" <<<"$out"; then
      echo "prosody: creating accounts failed: $out" >&2
      exit 1
    fi
    ;;
  command) command_line ;;
  stop) peer_kill "$2" 20 ;;
  *) echo "usage: $0 prepare|command|stop PID" >&2; exit 2 ;;
esac
