#!/usr/bin/env bash
# Proxy benchmark: `asock proxy` against a tokio `copy_bidirectional` proxy (`tokio-proxy`) and
# `socat TCP-LISTEN:..,fork TCP:..`, in one run, in front of the same echo server. The proxy is
# pinned to SERVER_CPU (0); the echo target and the load (`asock bench`) share LOAD_CPU (1).
# Proxies alternate A B C A B C over the rounds; the summary prints medians and asock/peer
# ratios of MB/s, messages/s and the proxy's CPU per MB and per message. The proxy's CPU is
# read from /proc over the measured part of each run (for socat, the forked children too).
#
#   bench/proxy.sh                                   # both scenarios, 3 rounds of 5 s
#   ROUNDS=5 SCENARIOS=st64kx16 bench/proxy.sh
#
# Scenarios: st64kx16 (16 streams of 64 KiB messages), pp64x256 (ping-pong, 64 B, 256
# connections). Environment: ROUNDS (3), DURATION (5), WARMUP (1), PROXIES ("asock tokio
# socat"), SERVER_CPU (0), LOAD_CPU (1), OUT (TSV of every run), CARGO_TARGET_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-st64kx16 pp64x256}
PROXIES=${PROXIES:-asock tokio socat}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$(mktemp --suffix=.tsv)}
TICKS=$(getconf CLK_TCK)

scenario_args() {
    case $1 in
        st64kx*) echo "--mode stream --size 65536 --connections ${1#st64kx}" ;;
        pp64x*) echo "--mode pingpong --size 64 --connections ${1#pp64x}" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

# CPU ticks used so far by PID and its children (live ones, and reaped ones via cutime/cstime).
tree_cpu() {
    local pid=$1 total=0 f
    for f in /proc/[0-9]*/stat; do
        # Fields after "(comm)": 2 = ppid, 12/13 = utime/stime, 14/15 = cutime/cstime.
        read -r -a s < <(sed 's/^.*) //' "$f" 2>/dev/null) || continue
        if [[ ${f#/proc/} == "$pid/stat" ]]; then
            total=$((total + s[11] + s[12] + s[13] + s[14]))
        elif [[ ${s[1]:-} == "$pid" ]]; then
            total=$((total + s[11] + s[12]))
        fi
    done
    echo "$total"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_proxy NAME TARGET: sets PROXY_PID and PROXY_ADDR.
start_proxy() {
    local log
    log=$(mktemp)
    case $1 in
        asock) taskset -c "$SERVER_CPU" "$BIN/asock" proxy --threads 1 127.0.0.1:0 "$2" >"$log" 2>&1 & ;;
        tokio) taskset -c "$SERVER_CPU" "$BIN/tokio-proxy" 127.0.0.1:0 "$2" >"$log" 2>&1 & ;;
        socat)
            local port
            port=$(free_port)
            taskset -c "$SERVER_CPU" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,nodelay" \
                "TCP:$2,nodelay" >"$log" 2>&1 &
            echo "Started socat at 127.0.0.1:$port" >"$log.started"
            ;;
        *) echo "unknown proxy $1" >&2; return 1 ;;
    esac
    PROXY_PID=$!
    local i
    for i in $(seq 100); do
        if [[ $1 == socat ]]; then
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                PROXY_ADDR=127.0.0.1:$port
                rm -f "$log" "$log.started"
                return 0
            fi
        elif grep -q '^Started' "$log"; then
            PROXY_ADDR=$(grep -m1 '^Started' "$log" | awk '{print $NF}')
            rm -f "$log"
            return 0
        fi
        sleep 0.05
    done
    echo "error: proxy $1 did not start: $(cat "$log")" >&2
    return 1
}

stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    pkill -P "$PROXY_PID" 2>/dev/null || true
}

ulimit -n 20000 2>/dev/null || true
build
start_server asock "$LOAD_CPU"
TARGET=$SERVER_ADDR
TARGET_PID=$SERVER_PID
trap 'kill $TARGET_PID 2>/dev/null || true' EXIT
echo "# scenario proxy round mb_per_s msgs_per_s proxy_cpu_s cpu_ms_per_mb cpu_us_per_msg" >"$OUT"
echo "results: $OUT (target $TARGET; rounds=$ROUNDS duration=${DURATION}s; load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2

for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario")
    for round in $(seq "$ROUNDS"); do
        for proxy in $PROXIES; do
            start_proxy "$proxy" "$TARGET"
            res=$(mktemp)
            # shellcheck disable=SC2086
            taskset -c "$LOAD_CPU" "$BIN/asock" bench "$PROXY_ADDR" $args --duration "$DURATION" \
                --warmup "$WARMUP" 2>/dev/null | grep '^msgs_per_s=' >"$res" &
            load=$!
            sleep "$WARMUP"
            c0=$(tree_cpu "$PROXY_PID")
            sleep "$DURATION"
            c1=$(tree_cpu "$PROXY_PID")
            wait "$load" || true
            line=$(cat "$res")
            rm -f "$res"
            stop_proxy
            if [[ -z $line ]]; then
                echo "  $scenario $proxy #$round: no result" >&2
                continue
            fi
            mb=$(field mb_per_s "$line")
            msgs=$(field msgs_per_s "$line")
            row=$(awk -v c="$((c1 - c0))" -v t="$TICKS" -v mb="$mb" -v m="$msgs" -v d="$DURATION" \
                'BEGIN { s = c / t; printf "%.3f %.4f %.3f", s, s * 1000 / (mb * d), s * 1e6 / (m * d) }')
            echo "$scenario $proxy $round $mb $msgs $row" >>"$OUT"
            echo "  $scenario $proxy #$round: $mb MB/s, $msgs msgs/s, proxy cpu (s, ms/MB, us/msg) $row" >&2
        done
    done
done

python3 - "$OUT" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
by = {}
for sc, px, _, mb, msgs, cpu, per_mb, per_msg in rows:
    by.setdefault((sc, px), []).append((float(mb), float(msgs), float(per_mb), float(per_msg)))
def med(sc, px, i):
    v = by.get((sc, px))
    return statistics.median(x[i] for x in v) if v else float("nan")
print(f"{'scenario':10} {'proxy':6} {'MB/s':>9} {'msgs/s':>10} {'ms CPU/MB':>10} {'us CPU/msg':>11}")
for sc in dict.fromkeys(r[0] for r in rows):
    for px in dict.fromkeys(r[1] for r in rows):
        print(f"{sc:10} {px:6} {med(sc,px,0):9.1f} {med(sc,px,1):10.0f} {med(sc,px,2):10.4f} {med(sc,px,3):11.2f}")
    for px in dict.fromkeys(r[1] for r in rows):
        if px == "asock":
            continue
        print(f"{sc:10} asock/{px}: MB/s x{med(sc,'asock',0)/med(sc,px,0):.2f}, "
              f"CPU/MB x{med(sc,'asock',2)/med(sc,px,2):.2f}, CPU/msg x{med(sc,'asock',3)/med(sc,px,3):.2f}")
PY
