#!/usr/bin/env bash
# Hostile peers against the release `asock echo-server` (issue 18's targets), about 2 minutes:
#  1. 5,000 peers each stalling a partial line of limit-1 bytes (--max-line 64 KiB): server
#     RSS per peer against 1.2 x the limit, and RSS after they leave against the idle figure;
#  2. under `ulimit -v 2000000`, 1,000 such peers at the CLI defaults (4 MiB lines, 512 MiB
#     budget): the server must not abort, and a probe client's round trips stay under 50 ms;
#  3. 2,000 silent TCP connections (held, reopened when dropped, for 30 s) against the TLS echo
#     server: an honest TLS client's handshake plus one round trip, 20 times, under 200 ms.
# Needs root or a hard limit high enough for `ulimit -n 20000`. Prints one line per target.
#   bench/hostile.sh                 # all three
#   TARGETS="1 3" bench/hostile.sh   # some of them
#   PEERS1=500 PEERS2=200 SILENT=300 SECS=10 bench/hostile.sh   # a quick version
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGETS=${TARGETS:-1 2 3}
PEERS1=${PEERS1:-5000}
PEERS2=${PEERS2:-1000}
SILENT=${SILENT:-2000}
SECS=${SECS:-30}
ulimit -n 20000
[[ ${NO_BUILD:-} ]] || (cd "$ROOT" && cargo build --release --quiet -p asock-cli)
PY="python3 $ROOT/bench/hostile.py"

# start CMD...: starts an echo server on 127.0.0.1:0; sets PID and PORT.
start() {
    LOG=$(mktemp)
    "$@" >"$LOG" 2>&1 &
    PID=$!
    for _ in $(seq 200); do
        if grep -q '^Started' "$LOG"; then
            PORT=$(grep -m1 '^Started' "$LOG" | awk '{print $NF}' | sed 's/.*://')
            return 0
        fi
        sleep 0.05
    done
    echo "error: server did not start: $(cat "$LOG")" >&2
    return 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    local rc=0
    wait "$PID" 2>/dev/null || rc=$?
    echo "server_exit=$rc log_lines=$(wc -l <"$LOG") $(grep -m1 -o 'memory budget[^(]*' "$LOG" || true)"
    grep -m3 -i 'abort\|alloc\|panick' "$LOG" || true
    rm -f "$LOG"
}

for t in $TARGETS; do
    case $t in
    1)
        limit=$((64 * 1024))
        start "$BIN/asock" echo-server --threads 1 --max-line $limit 127.0.0.1:0
        sleep 0.5
        echo "target 1: $PEERS1 peers x $((limit - 1)) bytes, --max-line $limit"
        line=$($PY stall "$PORT" "$PID" "$PEERS1" $((limit - 1)) 5)
        echo "$line"
        python3 - "$line" "$limit" <<'EOF'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split())
limit = int(sys.argv[2])
peers = int(f["sent_all"]) + int(f["unsent"])
per = (int(f["peak_kib"]) - int(f["idle_kib"])) * 1024 / max(1, peers)
back = int(f["after_kib"]) / max(1, int(f["idle_kib"]))
print(f"per_peer_bytes={per:.0f} ratio_to_limit={per / limit:.2f} (target <= 1.2) "
      f"after_over_idle={back:.2f} (target <= 1.10)")
EOF
        stop
        ;;
    2)
        echo "target 2: $PEERS2 peers x (4 MiB - 1) bytes, CLI defaults, ulimit -v 2000000"
        start bash -c "ulimit -v 2000000; exec $BIN/asock echo-server --threads 1 127.0.0.1:0"
        sleep 0.5
        SPID=$(pgrep -P "$PID" || echo "$PID")
        $PY stall "$PORT" "$SPID" "$PEERS2" $((4 * 1024 * 1024 - 1)) 5
        stop
        ;;
    3)
        echo "target 3: $SILENT silent TCP connections for $SECS s vs the TLS echo server"
        start "$BIN/asock" echo-server --threads 1 --tls-self-signed 127.0.0.1:0
        $PY silent "$PORT" "$SILENT" "$SECS" 20
        stop
        ;;
    esac
done
