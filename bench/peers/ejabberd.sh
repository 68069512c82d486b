#!/usr/bin/env bash
# ejabberd 23.01 driver for bench/compare.sh (environment: see lib.sh; also EJ_DIST_PORT,
# a free port for the Erlang distribution, which ejabberdctl needs to reach the node).
#   ejabberd.sh prepare   config in $PEER_DIR, accounts u0..u{N-1} (starts and stops
#                         ejabberd once to create them with one Erlang expression)
#   ejabberd.sh command   prints the foreground command, one argument per line
#   ejabberd.sh stop PID  `ejabberdctl stop` (killing the wrapper leaves the VM running),
#                         then waits for PID to exit
# ejabberd runs as the `ejabberd` user (see AS_EJABBERD): $PEER_DIR is handed to it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# As the ejabberd user already, so ejabberdctl does not switch with `su`: su goes through
# PAM, which resets the open-files limit to 1024, too few for the benchmark's
# connections; setpriv keeps the limit the caller raised.
AS_EJABBERD=(setpriv --reuid ejabberd --regid ejabberd --init-groups env HOME="$PEER_DIR")

ctl() {
  "${AS_EJABBERD[@]}" ejabberdctl --config-dir "$PEER_DIR" --config "$PEER_DIR/ejabberd.yml" \
    --ctl-config "$PEER_DIR/ejabberdctl.cfg" --logs "$PEER_DIR/logs" --spool "$PEER_DIR/db" "$@"
}

command_line() {
  printf '%s\n' "${AS_EJABBERD[@]}" ejabberdctl --config-dir "$PEER_DIR" --config "$PEER_DIR/ejabberd.yml" \
    --ctl-config "$PEER_DIR/ejabberdctl.cfg" --logs "$PEER_DIR/logs" --spool "$PEER_DIR/db" foreground
}

stop() {
  local pid="$1"
  ctl stop >/dev/null 2>&1 || true
  for _ in $(seq 1 300); do
    peer_alive "$pid" || return 0
    sleep 0.1
  done
  echo "ejabberd (pid $pid) did not stop in 30 s: killing it" >&2
  pkill -TERM -P "$pid" 2>/dev/null || true
  peer_kill "$pid" 5
}

case "${1:-}" in
  prepare)
    command -v ejabberdctl >/dev/null || { echo "ejabberd is not installed (apt-get install ejabberd)" >&2; exit 1; }
    mkdir -p "$PEER_DIR/logs" "$PEER_DIR/db"
    # ejabberd reads one PEM holding the certificate and its key.
    export EJ_PEM="$PEER_DIR/ejabberd.pem"
    cat "$PEER_CERT" "$PEER_KEY" >"$EJ_PEM"
    export EJ_NODE="bench$EJ_DIST_PORT@localhost"
    EJ_COOKIE="bench$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
    export EJ_COOKIE
    # By default an Erlang scheduler that runs out of work spins for a while before it
    # sleeps (as do the dirty CPU and I/O schedulers), and the spin counts in ejabberd's
    # CPU per operation: measured here, a quarter of a login at 100-200 logins/s, nothing
    # beyond the noise at the fixed rates (docs/benchmarks/README.md, "ejabberd's busy
    # wait"). Off, ejabberd sleeps when it has nothing to do, like Tern and Prosody, and
    # what it spends is work. EJABBERD_ERL_FLAGS="" measures the default.
    export EJ_ERL_FLAGS="${EJABBERD_ERL_FLAGS-+sbwt none +sbwtdcpu none +sbwtdio none}"
    peer_render "$HERE/ejabberd.yml.in" "$PEER_DIR/ejabberd.yml"
    peer_render "$HERE/ejabberdctl.cfg.in" "$PEER_DIR/ejabberdctl.cfg"
    chown -R ejabberd: "$PEER_DIR"
    chmod 0700 "$PEER_DIR"
    mapfile -t cmd < <(command_line)
    "${cmd[@]}" >"$PEER_DIR/prepare.out" 2>&1 &
    pid=$!
    trap 'stop $pid' EXIT
    peer_wait_port "$PEER_PORT" 60 || { echo "ejabberd did not start:" >&2; tail "$PEER_DIR/logs/ejabberd.log" "$PEER_DIR/prepare.out" >&2; exit 1; }
    # One expression evaluated in the node through a hidden Erlang node with the same
    # cookie, instead of one `ejabberdctl register` (a new Erlang VM, about a second) per
    # account. ejabberd hashes the passwords itself (SCRAM-SHA-1).
    # shellcheck disable=SC1091
    . "$PEER_DIR/ejabberdctl.cfg"
    reg="N = rpc:call('$ERLANG_NODE', lists, foldl, [fun(I, Acc) -> U = list_to_binary(\"u\" ++ integer_to_list(I)), case ejabberd_auth:try_register(U, <<\"$PEER_DOMAIN\">>, <<\"$PEER_PASSWORD\">>) of ok -> Acc + 1; {error, exists} -> Acc + 1; _ -> Acc end end, 0, lists:seq(0, $((PEER_USERS - 1)))], infinity), io:format(\"registered ~p~n\", [N]), init:stop()."
    # HOME: Erlang may write a .erlang.cookie there; keep it in the throwaway folder.
    # The port opens before the account tables exist: wait for the node to report
    # started, and try again a few times all the same.
    ctl started >/dev/null 2>&1 || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      out="$(cd "$PEER_DIR" || exit; HOME="$PEER_DIR" timeout 900 erl -sname "reg$$" -hidden -noshell -setcookie "$EJ_COOKIE" \
        -start_epmd false -erl_epmd_port "$ERL_DIST_PORT" -dist_listen false -eval "$reg" 2>&1 || true)"
      grep -q "registered $PEER_USERS\$" <<<"$out" && break
      sleep 2
    done
    if ! grep -q "registered $PEER_USERS\$" <<<"$out"; then
      echo "ejabberd: creating accounts failed: $out" >&2
      exit 1
    fi
    ;;
  command) command_line ;;
  stop) stop "$2" ;;
  *) echo "usage: $0 prepare|command|stop PID" >&2; exit 2 ;;
esac
