#!/usr/bin/env bash
# One-flow UDP bulk transfer of 1,200-byte datagrams (bench/udp-load's udp-bulk), in one run:
# asock with offload (sender `send_batch`: GSO; receiver GRO), asock without (one `send` per
# datagram, `recvmmsg` receives) and tokio (`send_to` / `recv_from`). Receiver pinned to
# SERVER_CPU, sender to LOAD_CPU, both with 4 MiB receive buffers; implementations alternate
# over the rounds and the summary prints each one's median receiver MB/s and the ratios.
#
#   bench/udp_bulk.sh                 # 5 rounds of 3 s
#   ROUNDS=3 SIZE=1400 bench/udp_bulk.sh
#
# Environment: ROUNDS (5), DURATION (3), SIZE (1200), SERVER_CPU (0), LOAD_CPU (1),
# IMPLS ("asock asock-plain tokio"), CARGO_TARGET_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release/udp-bulk
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
SIZE=${SIZE:-1200}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
IMPLS=${IMPLS:-asock asock-plain tokio}

(cd "$ROOT" && cargo build --release --quiet -p asock-udp-load)

RESULTS=$(mktemp)
LOG=$(mktemp)
RECV_PID=
cleanup() {
    [[ -n $RECV_PID ]] && kill "$RECV_PID" 2>/dev/null || true
    rm -f "$RESULTS" "$LOG"
}
trap cleanup EXIT

echo "UDP bulk, one flow, ${SIZE} B datagrams, $ROUNDS rounds of ${DURATION} s; receiver on CPU $SERVER_CPU, sender on CPU $LOAD_CPU" >&2
for round in $(seq "$ROUNDS"); do
    for impl in $IMPLS; do
        : >"$LOG"
        taskset -c "$SERVER_CPU" "$BIN" recv 127.0.0.1:0 "$impl" "$DURATION" >"$LOG" 2>&1 &
        RECV_PID=$!
        addr=
        for _ in $(seq 100); do
            if grep -q '^Started' "$LOG"; then
                addr=$(grep -m1 '^Started' "$LOG" | awk '{print $NF}')
                break
            fi
            sleep 0.05
        done
        [[ -n $addr ]] || { echo "error: $impl receiver did not start: $(cat "$LOG")" >&2; exit 1; }
        # The sender runs a little longer than the receiver counts.
        taskset -c "$LOAD_CPU" "$BIN" send "$addr" "$impl" "$(python3 -c "print($DURATION + 0.6)")" "$SIZE" >/dev/null 2>&1 || true
        wait "$RECV_PID" || true
        RECV_PID=
        mb=$(grep -o 'mb_per_s=[0-9.]*' "$LOG" | cut -d= -f2)
        printf 'round %d  %-12s %8s MB/s\n' "$round" "$impl" "${mb:-0}" >&2
        echo "$impl ${mb:-0}" >>"$RESULTS"
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    k, mb = line.split()
    v.setdefault(k, []).append(float(mb))
med = {k: statistics.median(x) for k, x in v.items()}
print("\nimpl          median MB/s   (min .. max)")
for k, x in v.items():
    print(f"{k:<13} {med[k]:>10.1f}   ({min(x):.1f} .. {max(x):.1f})")
print()
for a, b in [("asock", "tokio"), ("asock", "asock-plain"), ("asock-plain", "tokio")]:
    if a in med and b in med and med[b] > 0:
        print(f"{a} / {b}: {med[a] / med[b]:.2f}x")
PY
