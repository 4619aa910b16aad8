# Sourced by scripts/test and scripts/bench: a private, throwaway PostgreSQL.
#
# start_throwaway_postgres installs PostgreSQL with apt-get when it is missing (needs root), starts
# a server in a temporary directory on a free port (as the `postgres` user when run as root, since
# initdb refuses root) and exports PG_PORT and PG_DIR. An EXIT trap stops it and deletes the
# directory, also on failure or Ctrl-C.

find_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_throwaway_postgres() {
    PG_BIN=$(find_pg_bin || true)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "PostgreSQL server binaries not found and not root: install the 'postgresql' package" >&2
            exit 1
        fi
        echo "== installing PostgreSQL (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(find_pg_bin)
    fi

    PG_DIR=$(mktemp -d /tmp/artpay-pg.XXXXXX)
    PG_PORT=$(free_port)
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$PG_DIR"
        as_pg() { runuser -u postgres -- "$@"; }
    else
        as_pg() { "$@"; }
    fi
    trap stop_throwaway_postgres EXIT
    trap 'exit 130' INT TERM

    echo "== starting PostgreSQL on 127.0.0.1:$PG_PORT ($PG_DIR)"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 $*" start >/dev/null \
        || { cat "$PG_DIR/server.log" >&2; exit 1; }
    export PG_PORT PG_DIR
}

stop_throwaway_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR"
    return 0
}
