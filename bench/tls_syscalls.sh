#!/usr/bin/env bash
# TLS: system calls per unit of work of asock's TLS echo server and tokio-rustls's, counted with
# `strace -f -c` (every thread of the server). As in tls_callgrind.sh, each server runs each
# scenario twice (N and 2N units per connection, fixed counts: `tls-load MODE ADDR CA Nx ...`)
# and the difference of the counts is divided by the difference of the units the client
# counted, so start-up and shutdown cancel out.
#
#   bash bench/tls_syscalls.sh
#   SCENARIOS="full bulk16" bash bench/tls_syscalls.sh
#   BASE_BIN=/tmp/old/release SERVERS="asock-tls-base asock-tls tokio-tls" bash bench/tls_syscalls.sh
#
# Scenarios: full (8 clients, N=HS full TLS 1.3 handshakes each; per handshake), resumed (the
# same, resumed), bulk1 and bulk16 (1 or 16 connections, N=BULK 64 KiB writes each; per MB
# echoed), ping16 (64 B ping-pong over 16 connections, N=PING; per message). strace slows the
# server, so more events gather per epoll_wait than at full speed: read that share as a lower
# bound. Environment: SCENARIOS, SERVERS, HS (100), BULK (50), PING (500).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIOS=${SCENARIOS:-full resumed bulk1 bulk16 ping16}
SERVERS=${SERVERS:-asock-tls tokio-tls}
HS=${HS:-100}
BULK=${BULK:-50}
PING=${PING:-500}

command -v strace >/dev/null || { echo "error: strace is not installed (apt-get install strace)" >&2; exit 1; }
tls_certs
WORK=$(mktemp -d)
trap 'rm -rf "$TLS_DIR" "$WORK"' EXIT

# load SCENARIO N: the tls-load arguments for N units per connection.
load() {
    case $1 in
        full) echo "handshakes ${2}x 8" ;;
        resumed) echo "resumed ${2}x 8" ;;
        bulk1) echo "bulk ${2}x 1" ;;
        bulk16) echo "bulk ${2}x 16" ;;
        ping16) echo "pingpong ${2}x 16 64" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

units() {
    case $1 in
        full | resumed) echo "$HS" ;;
        bulk*) echo "$BULK" ;;
        *) echo "$PING" ;;
    esac
}

unit_name() {
    case $1 in
        full | resumed) echo "handshake" ;;
        bulk*) echo "MB" ;;
        *) echo "message" ;;
    esac
}

# count SERVER SCENARIO N: strace summary in $WORK/SERVER.SCENARIO.N; prints the units counted.
count() {
    local out=$WORK/$1.$2.$3 mode budget rest units child
    read -r mode budget rest <<<"$(load "$2" "$3")"
    start_server "$1" 0 strace -f -c -o "$out"
    # shellcheck disable=SC2086
    read -r _ units < <(taskset -c 1 "$BIN/tls-load" "$mode" "$SERVER_ADDR" "$TLS_DIR/ca.pem" "$budget" $rest)
    # Stop the traced server (strace's child); strace then writes its summary and exits.
    child=$(pgrep -P "$SERVER_PID" | head -1)
    kill "$child" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$SERVER_LOG"
    echo "$units"
}

echo "system calls of the server per unit (strace -f -c, difference of N and 2N units)"
for s in $SCENARIOS; do
    n=$(units "$s")
    for srv in $SERVERS; do
        ua=$(count "$srv" "$s" "$n")
        ub=$(count "$srv" "$s" "$((2 * n))")
        python3 - "$s" "$srv" "$(unit_name "$s")" "$ua" "$ub" "$WORK/$srv.$s.$n" "$WORK/$srv.$s.$((2 * n))" <<'PY'
import sys

def parse(path):
    calls = {}
    for line in open(path):
        f = line.split()
        if len(f) < 5 or not f[0][0].isdigit() or f[-1] == "total":
            continue
        calls[f[-1]] = int(f[3])
    return calls

scenario, server, unit, ua, ub = sys.argv[1:6]
c1, c2 = parse(sys.argv[6]), parse(sys.argv[7])
du = float(ub) - float(ua)
per = {k: (c2.get(k, 0) - c1.get(k, 0)) / du for k in set(c1) | set(c2)}
parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.005)
print(f"  {scenario:8} {server:15} {sum(per.values()):7.2f} per {unit}: {parts}")
PY
    done
done
