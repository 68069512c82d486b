#!/usr/bin/env bash
# Tern driver for bench/compare.sh (environment: see lib.sh; also TERN_BIN, the binary,
# and TERN_RUST_LOG, its log filter, default info: logging is part of the cost, as in
# production).
#   tern.sh prepare   config and certificate in $PEER_DIR, accounts u0..u{N-1} offline
#   tern.sh command   prints the foreground command, one argument per line
#   tern.sh stop PID  SIGTERM, then waits
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
CFG="$PEER_DIR/tern.toml"

case "${1:-}" in
  prepare)
    mkdir -p "$PEER_DIR/certs"
    cp "$PEER_CERT" "$PEER_DIR/certs/$PEER_DOMAIN.crt"
    cp "$PEER_KEY" "$PEER_DIR/certs/$PEER_DOMAIN.key"
    peer_render "$HERE/tern.toml.in" "$CFG"
    for i in $(seq 0 $((PEER_USERS - 1))); do
      if ! "$TERN_BIN" adduser "u$i@$PEER_DOMAIN" --password "$PEER_PASSWORD" --config "$CFG" >"$PEER_DIR/adduser.log" 2>&1; then
        grep -q "already exists" "$PEER_DIR/adduser.log" && continue
        echo "tern adduser u$i@$PEER_DOMAIN failed: $(cat "$PEER_DIR/adduser.log")" >&2
        exit 1
      fi
    done
    ;;
  command)
    # env sets the log filter: one more exec, as taskset is (well under a millisecond).
    printf '%s\n' env "RUST_LOG=${TERN_RUST_LOG:-info}" "$TERN_BIN" run --config "$CFG"
    ;;
  stop) peer_kill "$2" 10 ;;
  *) echo "usage: $0 prepare|command|stop PID" >&2; exit 2 ;;
esac
