#!/usr/bin/env bash
# TLS: full handshakes per second and bulk echo MB/s, asock against tokio-rustls, in one run.
#
# Both servers use the same rustls with the ring provider and face the same tokio-rustls load
# client (bench/tls-peer). The server is pinned to core 0, the client to core 1 (when taskset
# and two cores are there); asock and tokio alternate A B A B; medians and ratios are printed.
#
#   bash bench/tls_compare.sh                 # ROUNDS=3 SECS=3 CONNS=8
#   ROUNDS=5 SECS=5 bash bench/tls_compare.sh
#
# asock's server: `asock echo-server --raw --threads 1 --tls-cert F --tls-key F`.
# tokio's server: bench/tls-peer's tokio-tls-echo (current-thread runtime, raw echo).
set -euo pipefail
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
CONNS=${CONNS:-8}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release -q -p asock-cli -p asock-bench-tls-peer)
bin=$CARGO_TARGET_DIR/release
dir=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
"$bin/asock" cert --out "$dir" >/dev/null

pin_s=() pin_c=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_s=(taskset -c 0) pin_c=(taskset -c 1)
fi

start_server() { # impl -> sets server_pid, port
    local out=$dir/server.out
    : >"$out"
    case $1 in
    asock) "${pin_s[@]}" "$bin/asock" echo-server --raw --threads 1 \
        --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" 127.0.0.1:0 >"$out" 2>/dev/null &;;
    tokio) "${pin_s[@]}" "$bin/tokio-tls-echo" 127.0.0.1:0 "$dir/server.pem" "$dir/server.key" >"$out" 2>/dev/null &;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        port=$(head -n1 "$out" | sed -n 's/.*:\([0-9][0-9]*\)$/\1/p')
        [ -n "$port" ] && return 0
        sleep 0.05
    done
    echo "server $1 did not start" >&2
    exit 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A hs bulk
for r in $(seq "$ROUNDS"); do
    for impl in asock tokio; do
        start_server "$impl"
        h=$("${pin_c[@]}" "$bin/tls-load" handshakes "127.0.0.1:$port" "$dir/ca.pem" "$SECS" "$CONNS")
        b=$("${pin_c[@]}" "$bin/tls-load" bulk "127.0.0.1:$port" "$dir/ca.pem" "$SECS")
        stop_server
        hs[$impl]+="$h "
        bulk[$impl]+="$b "
        printf 'round %s %-5s handshakes/s %8s   bulk MB/s %8s\n' "$r" "$impl" "$h" "$b"
    done
done

ha=$(tr ' ' '\n' <<<"${hs[asock]}" | grep . | median)
ht=$(tr ' ' '\n' <<<"${hs[tokio]}" | grep . | median)
ba=$(tr ' ' '\n' <<<"${bulk[asock]}" | grep . | median)
bt=$(tr ' ' '\n' <<<"${bulk[tokio]}" | grep . | median)
echo
echo "medians of $ROUNDS rounds, ${SECS}s each (TLS 1.3, ECDSA P-256 cert, ring; $CONNS handshake clients; 64 KiB bulk writes)"
printf '%-22s %12s %12s %8s\n' metric asock tokio-rustls ratio
printf '%-22s %12s %12s %8s\n' "handshakes/s" "$ha" "$ht" "$(awk -v a="$ha" -v b="$ht" 'BEGIN{printf "%.2f", a/b}')"
printf '%-22s %12s %12s %8s\n' "bulk echo MB/s" "$ba" "$bt" "$(awk -v a="$ba" -v b="$bt" 'BEGIN{printf "%.2f", a/b}')"
