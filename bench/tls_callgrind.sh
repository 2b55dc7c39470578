#!/usr/bin/env bash
# TLS: user-space instructions per unit of work of asock's TLS echo server and tokio-rustls's,
# under valgrind's callgrind (instructions, not time, so it holds on a busy machine). Like
# callgrind.sh, each server runs each scenario twice (N and 2N units per connection, fixed
# counts: `tls-load MODE ADDR CA Nx ...`) and the difference is divided by the difference of the
# units the client counted; the 2N profiles are kept for callgrind_annotate.
#
#   bash bench/tls_callgrind.sh
#   SCENARIOS="ping16 bulk1" SERVERS="asock-tls tokio-tls" bash bench/tls_callgrind.sh
#   BASE_BIN=/tmp/old/release SERVERS="asock-tls-base asock-tls" bash bench/tls_callgrind.sh
#
# Scenarios (N per connection, or per client task for handshakes): ping16 (64 B ping-pong over
# 16 connections, N=PING), ping256 (256 connections, N=PING/8), bulk1 (one connection, N=BULK
# writes of 64 KiB), bulk16 (16 connections, N=BULK/4 writes each), full (8 clients, N=HS full
# TLS 1.3 handshakes each), resumed (the same, resumed). Units: instructions per message, per
# MB echoed, per handshake. Kernel time is not counted. Environment: SCENARIOS, SERVERS, PING
# (200), BULK (40), HS (10), OUTDIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIOS=${SCENARIOS:-ping16 ping256 bulk1 bulk16 full resumed}
SERVERS=${SERVERS:-asock-tls tokio-tls}
PING=${PING:-200}
BULK=${BULK:-40}
HS=${HS:-10}
OUTDIR=${OUTDIR:-$(mktemp -d)}
mkdir -p "$OUTDIR"
# This run's id in its profiles' names: a reused OUTDIR never adds old profiles to the sums.
RUN=$$

command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
tls_certs

# load SCENARIO N: the tls-load arguments for N units per connection.
load() {
    case $1 in
        ping16) echo "pingpong ${2}x 16 64" ;;
        ping256) echo "pingpong $(($2 / 8))x 256 64" ;;
        bulk1) echo "bulk ${2}x 1" ;;
        bulk16) echo "bulk $(($2 / 4))x 16" ;;
        full) echo "handshakes ${2}x 8" ;;
        resumed) echo "resumed ${2}x 8" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

# base N of a scenario
units() {
    case $1 in
        ping*) echo "$PING" ;;
        bulk*) echo "$BULK" ;;
        *) echo "$HS" ;;
    esac
}

# total SERVER SCENARIO N: prints "INSTRUCTIONS UNITS" (all threads; units as the client counted).
total() {
    local out=$OUTDIR/callgrind.$1.$2.$3.$RUN mode budget rest count
    read -r mode budget rest <<<"$(load "$2" "$3")"
    start_server "$1" 0 valgrind --tool=callgrind --callgrind-out-file="$out.%p" -q
    # shellcheck disable=SC2086
    read -r _ count < <(taskset -c 1 "$BIN/tls-load" "$mode" "$SERVER_ADDR" "$TLS_DIR/ca.pem" "$budget" $rest)
    stop_server
    echo "$(cat "$out".* | awk '/^summary:/ {s += $2} END {print s}') $count"
}

unit_name() {
    case $1 in
        ping*) echo "message" ;;
        bulk*) echo "MB" ;;
        *) echo "handshake" ;;
    esac
}

echo "user-space instructions per unit (callgrind; profiles in $OUTDIR)"
for s in $SCENARIOS; do
    n=$(units "$s")
    for srv in $SERVERS; do
        read -r a ua <<<"$(total "$srv" "$s" "$n")"
        read -r b ub <<<"$(total "$srv" "$s" "$((2 * n))")"
        awk -v s="$s" -v v="$srv" -v a="$a" -v b="$b" -v ua="$ua" -v ub="$ub" -v u="$(unit_name "$s")" \
            'BEGIN { printf "  %-8s %-16s %12.0f instructions per %s\n", s, v, (b - a) / (ub - ua), u }'
    done
done
echo "annotate: callgrind_annotate $OUTDIR/callgrind.SERVER.SCENARIO.2N.$RUN.PID"
