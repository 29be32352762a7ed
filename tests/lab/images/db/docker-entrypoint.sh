#!/bin/bash
# docker-entrypoint.sh for lasuite-lab/db: starts Debian's PostgreSQL 15 the way the official `postgres`
# image's entrypoint does, reduced to what the lab uses.
#
#  * As root: make $PGDATA owned by postgres (a fresh Swarm volume is root-owned), then re-exec itself as
#    postgres (setpriv).
#  * As postgres, when $PGDATA is empty: initdb with POSTGRES_USER (default "postgres") as superuser and
#    POSTGRES_PASSWORD as its password (required, or POSTGRES_PASSWORD_FILE); local socket connections are
#    trusted, TCP ones use scram-sha-256; then create POSTGRES_DB (default: the user name) on a temporary
#    socket-only server.  Any POSTGRES_* variable can be given as POSTGRES_*_FILE (a Swarm secret path).
#  * Finally exec `postgres` listening on 0.0.0.0:5432 (extra arguments are passed on, e.g. -c key=value).
# Leaves out: initdb.d scripts, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, version upgrades.
set -Eeuo pipefail

file_env() { # VAR [default]: VAR or the contents of the file named by VAR_FILE
  local var=$1 fvar="${1}_FILE" def=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
    echo "db: both $var and $fvar are set (they are exclusive)" >&2; exit 1
  fi
  local val=$def
  if [ -n "${!var:-}" ]; then val=${!var}; elif [ -n "${!fvar:-}" ]; then val=$(< "${!fvar}"); fi
  export "$var"="$val"
  unset "$fvar"
}

if [ "${1:-postgres}" = postgres ] || [ "${1:0:1}" = - ]; then
  [ "${1:-}" = postgres ] && shift
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
  fi
  file_env POSTGRES_USER postgres
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_DB "$POSTGRES_USER"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ]; then
      echo "db: database is uninitialized and POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set" >&2
      exit 1
    fi
    echo "db: initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
    pwfile=$(mktemp); printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
      psql -v ON_ERROR_STOP=1 -h /var/run/postgresql --username "$POSTGRES_USER" --dbname postgres \
        -q -c "CREATE DATABASE \"$POSTGRES_DB\";"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "db: initialisation complete"
  else
    echo "db: $PGDATA already initialised (PostgreSQL $(cat "$PGDATA/PG_VERSION")): skipping init"
  fi
  unset POSTGRES_PASSWORD
  exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
fi

exec "$@"
