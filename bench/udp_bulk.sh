#!/usr/bin/env bash
# UDP bulk transfer of 1,200-byte datagrams (bench/udp-load's udp-bulk), in one run, each
# implementation against its own kind at both ends: asock with offload (sender `send_batch`:
# GSO; receiver `receive_batch`: GRO), asock without (one `send` per datagram, `receive` from
# `recvmmsg` batches), tokio (`send_to` / `recv_from`) and quinn-udp (its `UdpSocketState` with
# GSO/GRO on a tokio socket, as quinn drives it). Receiver (or echo server) pinned to
# SERVER_CPU, sender (or load) to LOAD_CPU, 4 MiB receive buffers; implementations alternate
# over the rounds, and the summary prints each one's medians and the ratios.
#
# MODE=oneway (default): FLOWS sender sockets → one receiver; MB/s is the receiver's goodput
#   (what arrived: UDP drops what the receiver cannot take), CPU µs per datagram is each side's
#   own (getrusage), the receiver's per datagram received, the sender's per datagram sent.
# MODE=echo: one echo server of each implementation (udp-bulk echo; asock-cli is
#   `asock echo-server --udp`: `receive` + `outgoing()`), loaded by the same asock client
#   (udp-bulk load: FLOWS sockets, each with WINDOW datagrams in flight in GSO sends of up to
#   54); MB/s is the echo goodput, CPU µs per datagram the server's (/proc/PID/stat, whole run).
#
#   bench/udp_bulk.sh                              # one flow, one way, 5 rounds of 3 s
#   FLOWS=8 bench/udp_bulk.sh                      # 8 flows
#   MODE=echo ROUNDS=5 bench/udp_bulk.sh           # bulk echo
#   PRIORITY=rt ROUNDS=7 bench/udp_bulk.sh         # SCHED_RR, for a busy machine
#
# Environment: MODE (oneway), ROUNDS (5), DURATION (3), SIZE (1200), FLOWS (1), WINDOW (256,
# echo), SERVER_CPU (0), LOAD_CPU (1), IMPLS (oneway: "asock asock-plain tokio quinn"; echo:
# "asock asock-cli asock-plain tokio quinn"), PRIORITY (rt: chrt -r 10), CARGO_TARGET_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
MODE=${MODE:-oneway}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
SIZE=${SIZE:-1200}
FLOWS=${FLOWS:-1}
WINDOW=${WINDOW:-256}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
case $MODE in
    oneway) IMPLS=${IMPLS:-asock asock-plain tokio quinn} ;;
    echo) IMPLS=${IMPLS:-asock asock-cli asock-plain tokio quinn} ;;
    *) echo "error: MODE is oneway or echo" >&2; exit 2 ;;
esac
PRIO=()
if [[ ${PRIORITY:-} == rt ]]; then
    PRIO=(chrt -r 10)
fi

(cd "$ROOT" && cargo build --release --quiet -p asock-udp-load -p asock-cli)

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

RESULTS=$(mktemp)
LOG=$(mktemp)
PID=
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null || true
    rm -f "$RESULTS" "$LOG"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD pinned to SERVER_CPU, waits for its `Started ... at ADDR` line;
# sets PID and ADDR.
start() {
    local name=$1
    shift
    : >"$LOG"
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$@" >"$LOG" 2>&1 &
    PID=$!
    ADDR=
    for _ in $(seq 100); do
        if grep -q '^Started' "$LOG"; then
            ADDR=$(grep -m1 '^Started' "$LOG" | awk '{print $NF}')
            return 0
        fi
        sleep 0.05
    done
    echo "error: $name did not start: $(cat "$LOG")" >&2
    exit 1
}

echo "UDP bulk ($MODE), ${SIZE} B datagrams, $FLOWS flow(s), $ROUNDS rounds of ${DURATION} s; server/receiver on CPU $SERVER_CPU, load/sender on CPU $LOAD_CPU; $(uptime | sed 's/.*load/load/')" >&2
for round in $(seq "$ROUNDS"); do
    for impl in $IMPLS; do
        if [[ $MODE == oneway ]]; then
            start "$impl" "$BIN/udp-bulk" recv 127.0.0.1:0 "$impl" "$DURATION"
            # The sender runs a little longer than the receiver counts.
            sent=$("${PRIO[@]}" taskset -c "$LOAD_CPU" "$BIN/udp-bulk" send "$ADDR" "$impl" \
                "$(python3 -c "print($DURATION + 0.6)")" "$SIZE" "$FLOWS" 2>/dev/null || true)
            wait "$PID" || true
            PID=
            got=$(grep '^datagrams=' "$LOG" || true)
            mb=$(field mb_per_s "$got")
            rcpu=$(field cpu_us_per_datagram "$got")
            scpu=$(field cpu_us_per_datagram "$sent")
            printf 'round %d  %-12s %8s MB/s  receiver %s us/datagram  sender %s us/datagram\n' \
                "$round" "$impl" "${mb:-0}" "${rcpu:-?}" "${scpu:-?}" >&2
            echo "$impl ${mb:-0} ${rcpu:-0} ${scpu:-0}" >>"$RESULTS"
        else
            if [[ $impl == asock-cli ]]; then
                start "$impl" "$BIN/asock" echo-server --udp --threads 1 127.0.0.1:0
            else
                start "$impl" "$BIN/udp-bulk" echo 127.0.0.1:0 "$impl"
            fi
            cpu0=$(cpu_ticks "$PID")
            line=$("${PRIO[@]}" taskset -c "$LOAD_CPU" "$BIN/udp-bulk" load "$ADDR" "$DURATION" \
                "$SIZE" "$FLOWS" "$WINDOW")
            cpu1=$(cpu_ticks "$PID")
            kill "$PID" 2>/dev/null || true
            wait "$PID" 2>/dev/null || true
            PID=
            mb=$(field mb_per_s "$line")
            total=$(field total "$line")
            lost=$(field lost "$line")
            us=$(python3 -c "print(f'{($cpu1 - $cpu0) * 1e6 / $CLK_TCK / max(${total:-0}, 1):.3f}')")
            printf 'round %d  %-12s %8s MB/s echoed  server %s us/datagram  (lost %s)\n' \
                "$round" "$impl" "${mb:-0}" "$us" "${lost:-?}" >&2
            echo "$impl ${mb:-0} $us 0" >>"$RESULTS"
        fi
    done
done

python3 - "$RESULTS" "$MODE" <<'PY'
import statistics, sys
mode = sys.argv[2]
mb, a, b = {}, {}, {}
for line in open(sys.argv[1]):
    k, x, y, z = line.split()
    mb.setdefault(k, []).append(float(x))
    a.setdefault(k, []).append(float(y))
    b.setdefault(k, []).append(float(z))
med = lambda d: {k: statistics.median(v) for k, v in d.items()}
m, ma, mb_ = med(mb), med(a), med(b)
if mode == "oneway":
    print("\nimpl          median MB/s   (min .. max)        receiver us/datagram  sender us/datagram (medians)")
    for k, v in mb.items():
        print(f"{k:<13} {m[k]:>10.1f}   ({min(v):.1f} .. {max(v):.1f})   {ma[k]:>12.3f}   {mb_[k]:>12.3f}")
else:
    print("\nserver        median MB/s echoed   (min .. max)        server CPU us/datagram (median)")
    for k, v in mb.items():
        print(f"{k:<13} {m[k]:>10.1f}   ({min(v):.1f} .. {max(v):.1f})   {ma[k]:>12.3f}")
print()
for x, y in [("asock", "tokio"), ("asock", "quinn"), ("asock", "asock-plain"), ("asock-cli", "tokio"), ("asock-cli", "quinn"), ("quinn", "tokio")]:
    if x in m and y in m and m[y] > 0:
        print(f"{x} / {y}: {m[x] / m[y]:.2f}x MB/s, {ma[y] / max(ma[x], 1e-9):.2f}x less CPU per datagram")
PY
