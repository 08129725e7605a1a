#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (and for trying the stack on PostgreSQL).
# Installs Debian's postgresql when no server binaries are found (needs root), then runs one
# cluster on 127.0.0.1:${PG_PORT:-55432} with trust auth for local connections only.
#   server.sh start | stop | url
set -euo pipefail

port="${PG_PORT:-55432}"
dir="${ACH_PG_DIR:-/tmp/ach-postgres-$(id -u)}"
data="$dir/data"
log="$dir/server.log"

die() { echo "postgres: $*" >&2; exit 1; }

find_bin() {
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] && { echo "$d"; return; }
  return 1
}

install_server() {
  [ "$(id -u)" = 0 ] || die "no PostgreSQL server found; install Debian's 'postgresql' package or set TEST_DATABASE_URL"
  echo "postgres: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
}

as_owner() {
  # PostgreSQL refuses to run as root: run it as the 'postgres' system user then.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ready() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "${1:-}" in
  start)
    if ready; then echo "postgres: already listening on 127.0.0.1:$port" >&2; exit 0; fi
    bin=$(find_bin) || { install_server; bin=$(find_bin) || die "PostgreSQL binaries not found after install"; }
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
      useradd --system --home-dir "$dir" --shell /usr/sbin/nologin postgres
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
        || die "initdb failed in $data"
    fi
    as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -20 "$log" >&2; die "the server did not start (log: $log)"; }
    echo "postgres: up on 127.0.0.1:$port" >&2 ;;
  stop)
    bin=$(find_bin) || exit 0
    [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null || true ;;
  url) echo "postgresql://postgres@127.0.0.1:$port/postgres" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
