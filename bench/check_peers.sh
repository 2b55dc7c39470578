#!/usr/bin/env bash
# Checks that every peer echo server echoes correctly, with `asock bench` (which compares every
# echoed byte, catches reordering, early closes and hung connections, and expects the server to
# close after the last echo): short runs of ping-pong 64 B and 4 KiB at 1 to 1,000 connections,
# a 64 KiB stream, idle connections and a fixed message count. Exits 1 on the first server
# that fails, with the failing command and its output.
#
#   bench/check_peers.sh
#   SERVERS="uring uring-base" bench/check_peers.sh
#
# Environment: SERVERS (raw echo servers of bench/lib.sh: "asock tokio-ct tokio-mt mio uring
# uring-base uring-ms uring-coop uring-single uring-defer uring-each uring-b64"), LINE_SERVERS
# (line echo, checked with --lines: "asock-lines tokio-lines-ct tokio-lines-mt"),
# CARGO_TARGET_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SERVERS=${SERVERS-asock tokio-ct tokio-mt mio uring uring-base uring-ms uring-coop uring-single uring-defer uring-each uring-b64}
LINE_SERVERS=${LINE_SERVERS-asock-lines tokio-lines-ct tokio-lines-mt}

ulimit -n 20000 2>/dev/null || true
build
RUNS=(
    "-c 1 -s 64"
    "-c 16 -s 64"
    "-c 1000 -s 64"
    "-c 16 -s 4096"
    "-c 256 -s 4096"
    "-c 4 -s 65536 --mode stream"
    "-c 3 --mode idle"
    "-c 8 -s 100 --messages 2000"
)

failed=0
for spec in $(for s in $SERVERS; do echo "$s:"; done; for s in $LINE_SERVERS; do echo "$s:--lines"; done); do
    name=${spec%%:*}
    lines=${spec#*:}
    start_server "$name" 0
    ok=1
    for args in "${RUNS[@]}"; do
        # shellcheck disable=SC2086
        if ! out=$(timeout 60 "$BIN/asock" bench "$SERVER_ADDR" $args $lines -d 0.5 -w 0.1 2>&1) ||
            ! grep -q ' errors=0 ' <<<"$out"; then
            echo "FAIL $name: asock bench $args $lines" >&2
            echo "$out" | tail -5 >&2
            ok=0
            break
        fi
    done
    stop_server
    if ((ok)); then
        echo "ok   $name${lines:+ (lines)}: ${#RUNS[@]} runs, every echo verified"
    else
        failed=1
    fi
done
exit "$failed"
