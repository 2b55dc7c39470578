#!/usr/bin/env bash
# TLS: asock's server against tokio-rustls's, in one run: full and resumed TLS 1.3 handshakes/s,
# bulk echo MB/s (1 and 16 connections, 64 KiB writes), 64 B ping-pong msgs/s (16 and 256
# connections), each with the server's CPU time per unit of work.
#
# Both servers use the same rustls with the ring provider and face the same tokio-rustls load
# client (bench/tls-peer). The server is pinned to core 0, the client to core 1 (when taskset
# and two cores are there); asock and tokio alternate A B A B; medians and ratios are printed.
# Server CPU is the sum of its threads' run time (/proc/PID/task/*/schedstat, nanoseconds)
# over the measured seconds of each scenario, divided by what the client counted.
#
#   bash bench/tls_compare.sh                 # ROUNDS=3 SECS=3
#   ROUNDS=5 SECS=5 bash bench/tls_compare.sh
#   SCENARIOS="bulk1 bulk16" bash bench/tls_compare.sh
#   ASOCK_BASE=/tmp/asock-old IMPLS="base asock tokio" bash bench/tls_compare.sh   # a change's effect
#
# asock's server: `asock echo-server --raw --threads 1 --tls-cert F --tls-key F`.
# tokio's server: bench/tls-peer's tokio-tls-echo (current-thread runtime, raw echo).
set -euo pipefail
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
SCENARIOS=${SCENARIOS:-full resumed bulk1 bulk16 ping16 ping256}
# Servers, alternated in this order each round; ratios are of each to the last one. `base` is
# the asock binary at $ASOCK_BASE (say, a build from before a change).
IMPLS=${IMPLS:-asock tokio}
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
    asock | base)
        local exe=$bin/asock
        [ "$1" = base ] && exe=${ASOCK_BASE:?set ASOCK_BASE to the asock binary to compare with}
        "${pin_s[@]}" "$exe" echo-server --raw --threads 1 \
        --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" 127.0.0.1:0 >"$out" 2>/dev/null &;;
    tokio) "${pin_s[@]}" "$bin/tokio-tls-echo" "$dir/server.pem" "$dir/server.key" 127.0.0.1:0 >"$out" 2>/dev/null &;;
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

# The server's CPU time so far, in nanoseconds (all its threads).
cpu_ns() { cat /proc/"$server_pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s}'; }

# The tls-load arguments of a scenario.
load_args() {
    case $1 in
    full) echo "handshakes 8";;
    resumed) echo "resumed 8";;
    bulk1) echo "bulk 1";;
    bulk16) echo "bulk 16";;
    ping16) echo "pingpong 16 64";;
    ping256) echo "pingpong 256 64";;
    *) echo "unknown scenario $1" >&2; exit 2;;
    esac
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A rate cpu
for r in $(seq "$ROUNDS"); do
    for impl in $IMPLS; do
        start_server "$impl"
        line="round $r $impl:"
        for s in $SCENARIOS; do
            read -r mode conns size <<<"$(load_args "$s")"
            c0=$(cpu_ns)
            # shellcheck disable=SC2086
            read -r x count < <("${pin_c[@]}" "$bin/tls-load" "$mode" "127.0.0.1:$port" "$dir/ca.pem" "$SECS" $conns $size)
            c1=$(cpu_ns)
            # Server CPU: microseconds per unit (per handshake, per MB, per message).
            u=$(awk -v a="$c0" -v b="$c1" -v n="$count" 'BEGIN{printf "%.3f", (b - a) / 1000 / n}')
            rate[$impl,$s]+="$x "
            cpu[$impl,$s]+="$u "
            line+=" $s $x (${u}us)"
        done
        stop_server
        echo "$line"
    done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
label() {
    case $1 in
    full) echo "full handshakes/s (8 clients)|us/handshake";;
    resumed) echo "resumed handshakes/s (8)|us/handshake";;
    bulk1) echo "bulk echo MB/s (1 conn)|us/MB";;
    bulk16) echo "bulk echo MB/s (16 conns)|us/MB";;
    ping16) echo "64 B ping-pong msgs/s (16)|us/msg";;
    ping256) echo "64 B ping-pong msgs/s (256)|us/msg";;
    esac
}
echo
echo "medians of $ROUNDS rounds, ${SECS}s each (TLS 1.3, ECDSA P-256 cert, ring; 64 KiB bulk writes)"
read -r -a impls <<<"$IMPLS"
last=${impls[-1]}
hdr=$(printf '%-34s' metric)
for i in "${impls[@]}"; do hdr+=$(printf ' %10s' "$i"); done
for i in "${impls[@]:0:${#impls[@]}-1}"; do hdr+=$(printf ' %6s' "${i:0:5}/"); done
hdr+=$(printf '   %-13s' "server CPU")
for i in "${impls[@]}"; do hdr+=$(printf ' %9s' "$i"); done
for i in "${impls[@]:0:${#impls[@]}-1}"; do hdr+=$(printf ' %6s' "${i:0:5}/"); done
echo "$hdr"
echo "(a column headed NAME/ is NAME's median divided by ${last}'s)"
for s in $SCENARIOS; do
    IFS='|' read -r what unit <<<"$(label "$s")"
    row=$(printf '%-34s' "$what")
    for i in "${impls[@]}"; do row+=$(printf ' %10s' "$(med "${rate[$i,$s]}")"); done
    for i in "${impls[@]:0:${#impls[@]}-1}"; do
        row+=$(printf ' %6s' "$(ratio "$(med "${rate[$i,$s]}")" "$(med "${rate[$last,$s]}")")")
    done
    row+=$(printf '   %-13s' "$unit")
    for i in "${impls[@]}"; do row+=$(printf ' %9s' "$(med "${cpu[$i,$s]}")"); done
    for i in "${impls[@]:0:${#impls[@]}-1}"; do
        row+=$(printf ' %6s' "$(ratio "$(med "${cpu[$i,$s]}")" "$(med "${cpu[$last,$s]}")")")
    done
    echo "$row"
done
