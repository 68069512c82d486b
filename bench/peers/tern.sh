#!/usr/bin/env bash
# Tern driver for bench/compare.sh (environment: see lib.sh; also TERN_BIN, the binary,
# and TERN_RUST_LOG, its log filter, default info: logging is part of the cost, as in
# production).
#   tern.sh prepare   config (write_tern_config, bench/lib/tern-config.sh) and certificate
#                     in $PEER_DIR, accounts u0..u{N-1} offline
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
    {
      # Kept in the file: collect.py copies the config into the results.
      cat <<'EOF'
# Tern config for the side-by-side benchmark (bench/peers/tern.sh writes it). Same
# settings as the Prosody and ejabberd configs beside it: STARTTLS required on a private
# port, the shared ECDSA P-256 certificate (the client insists on TLS 1.3), SCRAM-SHA-1,
# roster and presence, offline storage, XEP-0215 with 1 STUN + 3 TURN REST services, no
# throttling (no per-client byte rate, no credentials rate limit), sled storage.
EOF
      write_tern_config --domain "$PEER_DOMAIN" --c2s "$PEER_PORT" \
        --modules "disco ping roster presence offline external_services" --no-throttle \
        --turn-host "$PEER_TURN_HOST" --turn-secret "$PEER_TURN_SECRET" --turn-ttl 86400
    } >"$CFG"
    chmod 600 "$CFG" # the TURN secret: owner only
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
