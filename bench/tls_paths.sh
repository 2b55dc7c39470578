#!/usr/bin/env bash
# rustls's buffered API against its caller-owned-buffer (`unbuffered`) API, on the server side
# of a TLS echo in memory (bench/tls-peer's tls-paths): user-space instructions per MB (64 KiB
# writes) and per 64 B message, under callgrind, counting only the server (`server_step`).
# Each case runs with N and 2N writes; the difference is divided by N. Both ways the server
# copies its input in once (standing for the socket's recv) and its output out once (the send).
#
#   bash bench/tls_paths.sh
#   BULK=100 SMALL=4000 bash bench/tls_paths.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BULK=${BULK:-60}
SMALL=${SMALL:-2000}
command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet -p asock-cli -p asock-bench-tls-peer)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$BIN/asock" cert --out "$dir" >/dev/null

# run MODE WRITES SIZE: the server's instructions.
run() {
    valgrind --tool=callgrind --toggle-collect='*server_step*' --callgrind-out-file="$dir/cg" -q \
        "$BIN/tls-paths" "$1" "$dir/server.pem" "$dir/server.key" "$dir/ca.pem" "$2" "$3" >/dev/null
    awk '/^summary:/ {print $2}' "$dir/cg"
}

echo "server-side user-space instructions (callgrind, rustls in memory)"
for mode in buffered unbuffered; do
    a=$(run "$mode" "$BULK" 65536)
    b=$(run "$mode" "$((2 * BULK))" 65536)
    c=$(run "$mode" "$SMALL" 64)
    d=$(run "$mode" "$((2 * SMALL))" 64)
    awk -v m="$mode" -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v n="$BULK" -v s="$SMALL" 'BEGIN {
        printf "  %-10s %10.0f per MB (64 KiB writes)  %6.0f per 64 B message\n", m, (b - a) / (n * 65536 / 1e6), (d - c) / s }'
done
