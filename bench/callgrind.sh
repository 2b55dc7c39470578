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

command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
build

# total NAME N LINESFLAG: instructions (Ir) the server ran for N echoes, all threads.
total() {
    local name=$1 n=$2 lines=$3 out=$OUTDIR/callgrind.$1.$2
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
echo "annotate: callgrind_annotate $OUTDIR/callgrind.NAME.$((2 * MESSAGES)).PID"
