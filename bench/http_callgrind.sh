#!/usr/bin/env bash
# User-space instructions per HTTP request under valgrind's callgrind: hyper on asock
# (asock/examples/hyper_server.rs --threads 1) against the same hyper server on tokio
# current_thread (bench/http-peer). Free of timing noise, so it works while the machine is busy.
#
#   bash bench/http_callgrind.sh                       # 64 connections, runs of 3 s and 8 s
#   OUTDIR=/tmp/cgh SERVERS=asock bash bench/http_callgrind.sh
#   callgrind_annotate --inclusive=yes /tmp/cgh/callgrind.asock.8.PID | head -60
#
# Each server runs under callgrind twice (wrk -c CONNS for SHORT and LONG seconds after a 1 s
# warm-up); the difference of the instruction totals divided by the difference of the request
# counts (the 1 s warm-up's requests included) cancels start-up and accepts. The server is pinned to CPU 0, wrk to CPU 1.
set -euo pipefail
CONNS=${CONNS:-64}
SHORT=${SHORT:-3}
LONG=${LONG:-8}
SERVERS=${SERVERS:-"asock tokio-ct"}
OUTDIR=${OUTDIR:-$(mktemp -d)}
mkdir -p "$OUTDIR"
# This run's id in its profiles' names: a reused OUTDIR never adds old profiles to the sums.
RUN=$$
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
bin=$CARGO_TARGET_DIR/release

command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p asock --example hyper_server --features hyper,test-certs &&
    cargo build --release -q -p asock-bench-http-peer)

server_cmd() {
    case $1 in
        asock) echo "$bin/examples/hyper_server --threads 1" ;;
        tokio-ct) echo "$bin/hyper-tokio" ;;
        tokio-mt) echo "$bin/hyper-tokio --multi-thread" ;;
        *) echo "unknown server $1" >&2; return 1 ;;
    esac
}

pid= log=$(mktemp)
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -f "$log"' EXIT

# run NAME SECS -> "REQUESTS INSTRUCTIONS"
run() {
    local name=$1 secs=$2 out=$OUTDIR/callgrind.$1.$2.$RUN addr= n w
    rm -f "$out".*
    : >"$log"
    # shellcheck disable=SC2046
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out.%p" -q $(server_cmd "$name") 127.0.0.1:0 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        addr=$(sed -n 's|^Listening on http://||p' "$log" | head -n1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "error: $name did not start: $(cat "$log")" >&2; exit 1; }
    # The warm-up's requests count too: their instructions are in the totals.
    w=$(taskset -c 1 wrk -t1 -c"$CONNS" -d1s --timeout 10s "http://$addr/" | awk '/requests in/ {print $1}')
    n=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 10s "http://$addr/" | awk '/requests in/ {print $1}')
    n=$((n + w))
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    echo "$n $(cat "$out".* | awk '/^summary:/ {s += $2} END {print s}')"
}

echo "user-space instructions per request (wrk -c $CONNS, keep-alive, GET /; profiles in $OUTDIR)"
for s in $SERVERS; do
    read -r n1 i1 < <(run "$s" "$SHORT")
    read -r n2 i2 < <(run "$s" "$LONG")
    awk -v s="$s" -v n1="$n1" -v n2="$n2" -v i1="$i1" -v i2="$i2" \
        'BEGIN { printf "  %-10s %8.0f instructions per request (%d and %d requests)\n", s, (i2 - i1) / (n2 - n1), n1, n2 }'
done
echo "annotate: callgrind_annotate --inclusive=yes $OUTDIR/callgrind.NAME.$LONG.$RUN.PID"
