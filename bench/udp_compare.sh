#!/usr/bin/env bash
# UDP echo throughput, in one run: asock's datagram echo against tokio's (current_thread), and
# asock with its batching off (one recvfrom + one sendto per datagram) to show what
# recvmmsg/sendmmsg batching gains. Each server is pinned to CPU 0 and the load generator
# (bench/udp-load: batched itself, so it is never the bottleneck) to CPU 1. Servers alternate
# A B C A B C over the rounds; the summary prints each server's median datagrams/s, its CPU
# time per echoed datagram (from /proc/PID/stat over the whole run), its system calls per echoed
# datagram (`perf stat -e raw_syscalls:sys_enter`, when perf can count them: unlike the rates,
# this does not change when other work shares the machine), and the ratios.
#
#   bench/udp_compare.sh                    # 5 rounds of 3 s
#   ROUNDS=3 DURATION=2 bench/udp_compare.sh
#
# Environment: ROUNDS (5), DURATION seconds per run (3), WARMUP seconds (0.5), SOCKETS client
# sockets (8), WINDOW datagrams in flight per socket (16), SIZE payload bytes (64), SERVER_CPU
# (0), LOAD_CPU (1), SERVERS ("asock tokio asock-nobatch"), CARGO_TARGET_DIR, BASE_BIN (a
# directory holding asock-udp-echo from another build: adds server "asock-base", for before/after
# runs such as `BASE_BIN=/tmp/base SERVERS="asock asock-base" bench/udp_compare.sh`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
SOCKETS=${SOCKETS:-8}
WINDOW=${WINDOW:-16}
SIZE=${SIZE:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_BIN=${BASE_BIN:-}
if [[ -n $BASE_BIN ]]; then
    SERVERS=${SERVERS:-asock asock-base tokio asock-nobatch}
else
    SERVERS=${SERVERS:-asock tokio asock-nobatch}
fi

(cd "$ROOT" && cargo build --release --quiet -p asock-udp-load -p asock-bench-peers)

server_cmd() {
    case $1 in
        asock) echo "$BIN/asock-udp-echo" ;;
        asock-nobatch) echo "$BIN/asock-udp-echo --batch 1 --direct" ;;
        asock-base) echo "${BASE_BIN:?BASE_BIN must name a directory}/asock-udp-echo" ;;
        tokio) echo "$BIN/tokio-udp-echo" ;;
        *) echo "unknown server $1" >&2; return 1 ;;
    esac
}

CLK_TCK=$(getconf CLK_TCK)
# User + system CPU ticks of a process so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

PERF_OK=
if command -v perf >/dev/null 2>&1 && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
    PERF_OK=1
fi

RESULTS=$(mktemp)
SERVER_LOG=$(mktemp)
PERF_LOG=$(mktemp)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -f "$RESULTS" "$SERVER_LOG" "$PERF_LOG"
}
trap cleanup EXIT

echo "UDP echo, ${SIZE} B datagrams, $SOCKETS sockets x $WINDOW in flight, $ROUNDS rounds of ${DURATION} s; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU" >&2
for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
        # Empty the log first: the background redirection truncates it only when the child runs.
        : >"$SERVER_LOG"
        # shellcheck disable=SC2046
        taskset -c "$SERVER_CPU" $(server_cmd "$server") 127.0.0.1:0 >"$SERVER_LOG" 2>&1 &
        SERVER_PID=$!
        addr=
        for _ in $(seq 100); do
            if grep -q '^Started' "$SERVER_LOG"; then
                addr=$(grep -m1 '^Started' "$SERVER_LOG" | awk '{print $NF}' || true)
                break
            fi
            sleep 0.05
        done
        [[ -n $addr ]] || { echo "error: $server did not start: $(cat "$SERVER_LOG")" >&2; exit 1; }
        perf_pid=
        if [[ -n $PERF_OK ]]; then
            perf stat -x, -e raw_syscalls:sys_enter -p "$SERVER_PID" -o "$PERF_LOG" &
            perf_pid=$!
            sleep 0.2
        fi
        cpu0=$(cpu_ticks "$SERVER_PID")
        line=$(taskset -c "$LOAD_CPU" "$BIN/udp-load" "$addr" --sockets "$SOCKETS" --window "$WINDOW" \
            --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP")
        cpu1=$(cpu_ticks "$SERVER_PID")
        syscalls=0
        if [[ -n $perf_pid ]]; then
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            syscalls=$(awk -F, '/raw_syscalls/ {print $1; exit}' "$PERF_LOG" || true)
            [[ $syscalls =~ ^[0-9]+$ ]] || syscalls=0
        fi
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        rate=$(tr ' ' '\n' <<<"$line" | sed -n 's/^datagrams_per_s=//p')
        lost=$(tr ' ' '\n' <<<"$line" | sed -n 's/^lost=//p')
        total=$(tr ' ' '\n' <<<"$line" | sed -n 's/^total=//p')
        us=$(python3 -c "print(f'{($cpu1 - $cpu0) * 1e6 / $CLK_TCK / max(${total:-0}, 1):.3f}')")
        per=$(python3 -c "print(f'{$syscalls / max(${total:-0}, 1):.3f}')")
        printf 'round %d  %-14s %10s datagrams/s  %s us CPU/datagram  %s syscalls/datagram  (lost %s)\n' \
            "$round" "$server" "$rate" "$us" "$per" "$lost" >&2
        echo "$server $rate $us $per" >>"$RESULTS"
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rates, cpus, sys_ = {}, {}, {}
for line in open(sys.argv[1]):
    name, rate, us, per = line.split()
    rates.setdefault(name, []).append(float(rate))
    cpus.setdefault(name, []).append(float(us))
    sys_.setdefault(name, []).append(float(per))
med = {k: statistics.median(v) for k, v in rates.items()}
cpu = {k: statistics.median(v) for k, v in cpus.items()}
scs = {k: statistics.median(v) for k, v in sys_.items()}
print("\nserver          median datagrams/s   (min .. max)          CPU us/datagram  syscalls/datagram (medians)")
for k, v in rates.items():
    print(f"{k:<15} {med[k]:>14,.0f}       ({min(v):,.0f} .. {max(v):,.0f})   {cpu[k]:>10.3f}   {scs[k]:>10.3f}")
def ratio(a, b):
    if a in med and b in med and med[b] > 0:
        print(f"{a} / {b}: {med[a] / med[b]:.2f}x datagrams/s, {cpu[b] / max(cpu[a], 1e-9):.2f}x less CPU per datagram")
print()
ratio("asock", "tokio")
ratio("asock", "asock-base")
ratio("asock", "asock-nobatch")
ratio("asock-nobatch", "tokio")
PY
