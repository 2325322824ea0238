#!/usr/bin/env bash
# Make sure the PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) that the tests use answer.
# A service that is down is started (when it is installed here) and waited for, up to
# NOTIFLOW_SERVICES_TIMEOUT seconds (default 30). Exits non-zero, saying which one and why,
# when a service still cannot be reached.
set -euo pipefail

HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379
TIMEOUT=${NOTIFLOW_SERVICES_TIMEOUT:-30}

say() { echo "ensure-services: $*" >&2; }

# --- probes ---------------------------------------------------------------------------------
tcp_open() { # host port: true when something accepts a TCP connection there
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

postgres_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2
    elif command -v python3 >/dev/null 2>&1; then
        # An SSLRequest: a PostgreSQL server answers with one byte, 'S' or 'N'.
        python3 - "$HOST" "$PG_PORT" <<'EOF' 2>/dev/null
import socket, struct, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
    s.sendall(struct.pack("!ii", 8, 80877103))
    sys.exit(0 if s.recv(1) in (b"S", b"N") else 1)
EOF
    else
        tcp_open "$HOST" "$PG_PORT"
    fi
}

redis_up() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
    else
        timeout 3 bash -c '
            exec 3<>"/dev/tcp/$0/$1" || exit 1
            printf "PING\r\n" >&3
            IFS= read -r reply <&3
            [[ $reply == +PONG* ]]
        ' "$HOST" "$REDIS_PORT" 2>/dev/null
    fi
}

# --- starters (the same commands that start them on the CI machines) ------------------------
start_postgres() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
        say "PostgreSQL is not installed here (no pg_ctlcluster or /etc/postgresql);" \
            "install it (Debian: apt-get install postgresql) or start it on $HOST:$PG_PORT"
        return 1
    fi
    say "PostgreSQL is not answering on $HOST:$PG_PORT; starting it"
    # shellcheck disable=SC2046 # one cluster version directory is expected
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start || true
}

start_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        say "Redis is not installed here (no redis-server);" \
            "install it (Debian: apt-get install redis-server) or start it on $HOST:$REDIS_PORT"
        return 1
    fi
    say "Redis is not answering on $HOST:$REDIS_PORT; starting it"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
}

# --- main -----------------------------------------------------------------------------------
failed=0
postgres_up || start_postgres || failed=1
redis_up || start_redis || failed=1
[ "$failed" -eq 0 ] || exit 1

deadline=$((SECONDS + TIMEOUT))
while true; do
    pg_ok=0 redis_ok=0
    postgres_up && pg_ok=1
    redis_up && redis_ok=1
    if [ "$pg_ok" -eq 1 ] && [ "$redis_ok" -eq 1 ]; then
        say "PostgreSQL ($HOST:$PG_PORT) and Redis ($HOST:$REDIS_PORT) are up"
        exit 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        [ "$pg_ok" -eq 1 ] || say "PostgreSQL still does not answer on $HOST:$PG_PORT after" \
            "${TIMEOUT}s (see /var/log/postgresql/)"
        [ "$redis_ok" -eq 1 ] || say "Redis still does not answer on $HOST:$REDIS_PORT after" \
            "${TIMEOUT}s (see /var/log/redis/ci.log)"
        exit 1
    fi
    sleep 0.5
done
