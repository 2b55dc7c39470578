#!/usr/bin/env bash
# Memory per idle connection: RSS of an echo server holding N idle connections, minus its RSS
# with none, divided by N. Every connection first makes one verified round trip (so buffers
# that a server takes when bytes flow are counted if it keeps them), then stays idle.
#
#   bench/memory.sh
#   CONNECTIONS=2000 SERVERS="asock-lines tokio-lines-ct" bench/memory.sh
#   CONNECTIONS=1000 SERVERS="asock-tls tokio-tls" bench/memory.sh
#
# Environment: CONNECTIONS (10000), SERVERS ("asock-lines tokio-lines-ct tokio-lines-mt asock
# tokio-ct mio asock-tls tokio-tls"; line servers get line messages; the TLS servers, asock's
# and tokio-rustls's raw echo over the same rustls, get a full TLS 1.3 handshake first),
# SERVER_CPU (0), LOAD_CPU (1), CARGO_TARGET_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONNECTIONS=${CONNECTIONS:-10000}
SERVERS=${SERVERS:-asock-lines tokio-lines-ct tokio-lines-mt asock tokio-ct mio asock-tls tokio-tls}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

# Both the server and the load generator hold one descriptor per connection.
need=$((CONNECTIONS + 1000))
if (($(ulimit -n) < need)); then
    ulimit -n "$need" 2>/dev/null || {
        echo "error: cannot raise the open-file limit to $need (ulimit -n)" >&2
        exit 1
    }
fi
build
if [[ " $SERVERS " == *-tls\ * ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p asock-bench-tls-peer)
    TLS_DIR=$(mktemp -d)
    trap 'rm -rf "$TLS_DIR"' EXIT
    "$BIN/asock" cert --out "$TLS_DIR" >/dev/null
fi

rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

echo "memory per idle connection ($CONNECTIONS connections, one 64-byte round trip each)"
for name in $SERVERS; do
    lines=
    [[ $name == *lines* ]] && lines=--lines
    [[ $name == *-tls ]] && lines="--tls --ca $TLS_DIR/ca.pem"
    start_server "$name" "$SERVER_CPU"
    sleep 0.3
    before=$(rss_kib "$SERVER_PID")
    log=$(mktemp)
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$BIN/asock" bench "$SERVER_ADDR" --mode idle \
        --connections "$CONNECTIONS" --size 64 $lines --warmup 0 --duration 4 >"$log" 2>&1 &
    load=$!
    for _ in $(seq 600); do
        grep -q '^ready' "$log" && break
        kill -0 "$load" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^ready' "$log"; then
        echo "  $name: the connections did not open: $(tail -1 "$log")" >&2
        kill "$load" 2>/dev/null || true
        stop_server
        continue
    fi
    sleep 1
    after=$(rss_kib "$SERVER_PID")
    wait "$load" || true
    stop_server
    rm -f "$log"
    awk -v n="$name" -v b="$before" -v a="$after" -v c="$CONNECTIONS" 'BEGIN {
        printf "  %-16s RSS %7d KiB idle, %7d KiB with %d connections: %7.0f bytes per connection\n",
            n, b, a, c, (a - b) * 1024 / c }'
done
