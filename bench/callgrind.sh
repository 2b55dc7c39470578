#!/usr/bin/env bash
# User-space instructions per echoed message of each echo server, under valgrind's callgrind:
# noise-free (instructions, not time), so it works on a busy machine. Like syscalls.sh, each
# server runs twice (N and 2N messages) and the difference is divided by N; the profile of the
# 2N run is kept for callgrind_annotate.
#
#   bench/callgrind.sh
#   MESSAGES=10000 SERVERS="asock mio" LINE_SERVERS= bench/callgrind.sh
#
# Environment: MESSAGES (N, default 20000), CONNECTIONS (16), SIZE (64), SERVERS ("asock
# tokio-ct mio uring"), LINE_SERVERS ("asock-lines tokio-lines-ct"), OUTDIR (where the
# profiles are kept), CARGO_TARGET_DIR. Kernel time is not counted: this is the part a runtime
# controls.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MESSAGES=${MESSAGES:-20000}
CONNECTIONS=${CONNECTIONS:-16}
SIZE=${SIZE:-64}
SERVERS=${SERVERS:-asock tokio-ct mio uring}
LINE_SERVERS=${LINE_SERVERS-asock-lines tokio-lines-ct}
OUTDIR=${OUTDIR:-$(mktemp -d)}
mkdir -p "$OUTDIR"
# Each run's files carry its own id, so an OUTDIR used before never adds old profiles to the
# sums (that doubled every figure once).
RUN=$$

command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
build

# total NAME N LINESFLAG: instructions (Ir) the server ran for N echoes, all threads.
total() {
    local name=$1 n=$2 lines=$3 out=$OUTDIR/callgrind.$1.$2.$RUN
    start_server "$name" 0 valgrind --tool=callgrind --callgrind-out-file="$out.%p" -q
    # shellcheck disable=SC2086
    "$BIN/asock" bench "$SERVER_ADDR" --connections "$CONNECTIONS" --size "$SIZE" \
        --messages "$n" $lines >/dev/null
    stop_server
    # Sum the totals of every thread's file.
    cat "$out".* | awk '/^summary:/ {s += $2} END {print s}'
}

echo "user-space instructions per echoed message ($CONNECTIONS connections, $SIZE B; profiles in $OUTDIR)"
for spec in $(for s in $SERVERS; do echo "$s:"; done; for s in $LINE_SERVERS; do echo "$s:--lines"; done); do
    name=${spec%%:*}
    lines=${spec#*:}
    a=$(total "$name" "$MESSAGES" "$lines")
    b=$(total "$name" "$((2 * MESSAGES))" "$lines")
    awk -v n="$name${lines:+ (lines)}" -v a="$a" -v b="$b" -v m="$MESSAGES" \
        'BEGIN { printf "  %-24s %8.0f instructions per message\n", n, (b - a) / m }'
done
echo "annotate: callgrind_annotate $OUTDIR/callgrind.NAME.$((2 * MESSAGES)).$RUN.PID"

# ---- UDP datagram echo (issue #20; kept apart from the TCP part above) ----------------------
# User-space instructions per echoed datagram of each UDP echo server, the same way: N and 2N
# datagrams from `asock bench --udp` (ping-pong, UDP_CONNECTIONS sockets, UDP_SIZE bytes), the
# difference divided by N. asock-udp is `asock echo-server --udp` (`receive` + `outgoing()`,
# recvmmsg/sendmmsg batches, GRO/GSO on), tokio-udp is bench/peers' `recv_from` + `send_to`.
# UDP_SERVERS="" skips the section; UDP_MESSAGES (MESSAGES), UDP_CONNECTIONS (16), UDP_SIZE (64).
UDP_SERVERS=${UDP_SERVERS-asock-udp tokio-udp}
UDP_MESSAGES=${UDP_MESSAGES:-$MESSAGES}
UDP_CONNECTIONS=${UDP_CONNECTIONS:-16}
UDP_SIZE=${UDP_SIZE:-64}

udp_server_cmd() {
    case $1 in
        asock-udp) echo "$BIN/asock echo-server --udp --threads 1" ;;
        tokio-udp) echo "$BIN/tokio-udp-echo" ;;
        *) echo "unknown UDP server $1" >&2; return 1 ;;
    esac
}

# udp_total NAME N: instructions (Ir) the UDP server ran for N echoed datagrams, all threads.
udp_total() {
    local name=$1 n=$2 out=$OUTDIR/callgrind.$1.$2.$RUN log pid addr= i
    log=$(mktemp)
    # shellcheck disable=SC2046
    valgrind --tool=callgrind --callgrind-out-file="$out.%p" -q $(udp_server_cmd "$name") 127.0.0.1:0 >"$log" 2>&1 &
    pid=$!
    for i in $(seq 200); do
        addr=$(grep -m1 '^Started' "$log" | awk '{print $NF}' || true)
        [[ -n $addr ]] && break
        sleep 0.05
    done
    [[ -n $addr ]] || { echo "error: UDP server $name did not start: $(cat "$log")" >&2; kill "$pid"; exit 1; }
    "$BIN/asock" bench "$addr" --udp --connections "$UDP_CONNECTIONS" --size "$UDP_SIZE" \
        --messages "$n" >/dev/null
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
    cat "$out".* | awk '/^summary:/ {s += $2} END {print s}'
}

if [[ -n $UDP_SERVERS ]]; then
    echo "user-space instructions per echoed datagram ($UDP_CONNECTIONS UDP sockets ping-pong, $UDP_SIZE B)"
    for name in $UDP_SERVERS; do
        a=$(udp_total "$name" "$UDP_MESSAGES")
        b=$(udp_total "$name" "$((2 * UDP_MESSAGES))")
        awk -v n="$name" -v a="$a" -v b="$b" -v m="$UDP_MESSAGES" \
            'BEGIN { printf "  %-24s %8.0f instructions per datagram\n", n, (b - a) / m }'
    done
fi
