#!/usr/bin/env bash
# A throwaway PostgreSQL server for development, tests and the local cluster.
#
#   scripts/postgres.sh start DATADIR PORT   initdb DATADIR if it is empty, start a server on
#                                            127.0.0.1:PORT, create the database `confide`,
#                                            print its URL
#   scripts/postgres.sh stop DATADIR         stop it (fast shutdown); fine if not running
#   scripts/postgres.sh status DATADIR       exit 0 when it runs
#
# The server listens on 127.0.0.1 only, with its Unix socket inside DATADIR, and trusts every
# loopback connection (initdb --auth=trust) as the superuser `confide`: it is meant for one
# machine's tests and local clusters, never for a shared or exposed database.
# PostgreSQL refuses to run as root: under root the server binaries run as the system user
# `confide-pg` (created when absent), which then owns DATADIR. The binaries come from PATH,
# else /usr/lib/postgresql/*/bin, else Debian's `postgresql` package is installed.
set -euo pipefail

PG_USER=confide-pg
DB=confide

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bindir() {
    local initdb
    if initdb=$(command -v initdb 2>/dev/null) && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

bindir() {
    local dir
    if dir=$(find_bindir); then
        echo "$dir"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "PostgreSQL server binaries not found; install Debian's postgresql package"
    echo "postgres.sh: installing Debian's postgresql package" >&2
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    find_bindir || die "PostgreSQL server binaries still not found after installing"
}

# Run a command as the server's user: confide-pg under root, else oneself.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    if ! id "$PG_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            "$PG_USER"
    fi
}

running() { as_pg "$1/pg_ctl" status -D "$2" >/dev/null 2>&1; }

cmd_start() {
    local datadir=$1 port=$2 bin
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number"
    bin=$(bindir)
    ensure_user
    mkdir -p "$datadir"
    datadir=$(cd "$datadir" && pwd -P)
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$PG_USER" "$datadir"
        chmod 700 "$datadir"
        runuser -u "$PG_USER" -- test -w "$datadir" \
            || die "$PG_USER cannot reach $datadir (a parent folder is closed to other users)"
    fi
    if [ ! -f "$datadir/PG_VERSION" ]; then
        [ -z "$(ls -A "$datadir")" ] || die "$datadir is neither empty nor a PostgreSQL data dir"
        local log
        log=$(mktemp)
        as_pg "$bin/initdb" -D "$datadir" -U confide --auth=trust --encoding=UTF8 \
            --no-locale >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "initdb failed"; }
        rm -f "$log"
    fi
    # A Unix socket path is limited to 107 bytes: a deeper DATADIR gets TCP only.
    local sockdir="$datadir"
    [ ${#datadir} -le 90 ] || sockdir=""
    if ! running "$bin" "$datadir"; then
        as_pg "$bin/pg_ctl" start -D "$datadir" -w -t 60 -l "$datadir/server.log" \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$sockdir' -c max_connections=300" \
            >/dev/null || { tail -n 20 "$datadir/server.log" >&2 || true; die "the server did not start"; }
    fi
    local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U confide -X -q -v ON_ERROR_STOP=1)
    local ready=0
    for _ in $(seq 1 120); do
        if "${psql[@]}" -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.5
    done
    [ "$ready" -eq 1 ] || die "the server on 127.0.0.1:$port does not answer"
    if [ -z "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE $DB" >/dev/null
    fi
    echo "postgresql://confide@127.0.0.1:$port/$DB"
}

cmd_stop() {
    local datadir=$1 bin
    [ -f "$datadir/PG_VERSION" ] || return 0
    bin=$(find_bindir) || die "PostgreSQL server binaries not found"
    if running "$bin" "$datadir"; then
        as_pg "$bin/pg_ctl" stop -D "$datadir" -m fast -w -t 60 >/dev/null
    fi
}

cmd_status() {
    local bin
    bin=$(find_bindir) || die "PostgreSQL server binaries not found"
    running "$bin" "$1"
}

case "${1:-}" in
    start) [ $# -eq 3 ] || die "usage: $0 start DATADIR PORT"; cmd_start "$2" "$3" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DATADIR"; cmd_stop "$2" ;;
    status) [ $# -eq 2 ] || die "usage: $0 status DATADIR"; cmd_status "$2" ;;
    *) die "usage: $0 start DATADIR PORT | stop DATADIR | status DATADIR" ;;
esac
