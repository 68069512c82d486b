# shellcheck shell=bash
# One writer for the throwaway Tern config, so the drivers that start a server cannot
# drift apart.
# Sourced (not run) by bench/run.sh, bench/soak.sh, bench/peers/lib.sh (for tern.sh and
# compare.sh) and tests/interop/run.sh. (tests/interop/coturn_check.sh writes its own: its
# TURN services point at a real coturn.)

# What bench/run.sh and bench/soak.sh enable: the server's default modules
# (config/tern.toml) plus external_services; each line here is a line of the TOML list.
# shellcheck disable=SC2034 # used by the scripts that source this file
TERN_BENCH_MODULES="disco ping version time
roster presence offline vcard last
private blocklist carbons csi smacks
register external_services"

# N distinct free loopback TCP ports, space-separated: read -r A B < <(free_ports 2)
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
}

# Prints the config on stdout: write_tern_config OPTION... >DIR/tern.toml
# Paths are relative to the config's folder: data in data/, a self-signed certificate
# generated in (or taken from) certs/DOMAIN.crt and .key. Always: sled storage,
# require_encryption, one host, and external_services (XEP-0215) with 1 STUN and 3 TURN
# REST services (udp/tcp 3478, turns 5349).
#   --domain NAME         the host (required)
#   --c2s PORT            STARTTLS listener on 127.0.0.1 (required)
#   --direct-tls PORT     also a direct TLS listener on 127.0.0.1
#   --modules "A B ..."   the global modules_enabled; without it the server's default list
#                         (a list of several lines keeps its lines)
#   --host-modules "A .." the host's own modules_enabled, added to the global ones
#   --turn-host HOST, --turn-secret SECRET, --turn-ttl SECONDS   external_services (required)
#   --no-throttle         for benchmarks: no per-client byte or stanza rate ([limits] rate
#                         and stanza_rate 0) and no credentials rate limit (rate_limit = false)
write_tern_config() {
  local domain="" c2s="" direct_tls="" modules="" host_modules="" turn_host="" turn_secret=""
  local turn_ttl="" throttle=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --no-throttle) throttle=0; shift; continue ;;
      --domain | --c2s | --direct-tls | --modules | --host-modules | --turn-host | --turn-secret | --turn-ttl)
        [ $# -ge 2 ] || { echo "write_tern_config: $1 needs a value" >&2; return 2; } ;;
      *) echo "write_tern_config: unknown option $1" >&2; return 2 ;;
    esac
    case "$1" in
      --domain) domain="$2" ;;
      --c2s) c2s="$2" ;;
      --direct-tls) direct_tls="$2" ;;
      --modules) modules="$2" ;;
      --host-modules) host_modules="$2" ;;
      --turn-host) turn_host="$2" ;;
      --turn-secret) turn_secret="$2" ;;
      --turn-ttl) turn_ttl="$2" ;;
    esac
    shift 2
  done
  local v
  for v in domain c2s turn_host turn_secret turn_ttl; do
    [ -n "${!v}" ] || { echo "write_tern_config: --${v//_/-} is required" >&2; return 2; }
  done

  echo 'data_dir = "data"'
  echo 'storage = "sled"'
  echo 'require_encryption = true'
  [ -z "$modules" ] || _tern_toml_list modules_enabled "$modules"
  echo
  echo '[listen]'
  echo "c2s = [\"127.0.0.1:$c2s\"]"
  # Without a port, no direct TLS listener at all: the default (5223) would collide with
  # any other Tern on the machine.
  if [ -n "$direct_tls" ]; then
    echo "c2s_direct_tls = [\"127.0.0.1:$direct_tls\"]"
  else
    echo 'c2s_direct_tls = []'
  fi
  echo
  echo '[tls]'
  echo 'certs_dir = "certs"'
  echo
  if [ "$throttle" = 0 ]; then
    echo '# Throttles off (--no-throttle): a benchmark would measure the limit, not the server.'
    echo '[limits]'
    echo 'rate = 0'
    echo 'stanza_rate = 0'
    echo
  fi
  echo "[hosts.$domain]"
  [ -z "$host_modules" ] || _tern_toml_list modules_enabled "$host_modules"
  echo
  echo '[modules.external_services]'
  echo "host = \"$turn_host\""
  echo "secret = \"$turn_secret\""
  echo "ttl = $turn_ttl"
  [ "$throttle" = 1 ] || echo 'rate_limit = false'
  local service type transport port
  for service in "stun udp 3478" "turn udp 3478" "turn tcp 3478" "turns tcp 5349"; do
    read -r type transport port <<<"$service"
    printf '\n[[modules.external_services.services]]\ntype = "%s"\ntransport = "%s"\nport = %s\n' \
      "$type" "$transport" "$port"
  done
}

# KEY = ["A", "B", ...] from KEY and a list of words: on one line, or, when the list has
# several lines, one TOML line for each of them between `KEY = [` and `]`.
_tern_toml_list() {
  local key="$1" list="$2" line words
  if [[ "$list" != *$'\n'* ]]; then
    read -ra words <<<"$list"
    echo "$key = [$(_tern_toml_strings "${words[@]}")]"
    return
  fi
  echo "$key = ["
  while IFS= read -r line; do
    read -ra words <<<"$line"
    [ "${#words[@]}" = 0 ] || echo "    $(_tern_toml_strings "${words[@]}"),"
  done <<<"$list"
  echo "]"
}

# "A", "B", ...
_tern_toml_strings() {
  local out
  out="$(printf '"%s", ' "$@")"
  echo "${out%, }"
}
