#!/usr/bin/env bash
# HTTP/1.1 keep-alive with wrk: hyper on asock (asock/examples/hyper_server.rs, --threads 1)
# against the same hyper server on tokio current_thread and multi_thread (bench/http-peer),
# GET / -> "Hello, world!".
#
# The server is pinned to CPU 0, wrk (one thread) to CPU 1. Servers alternate within each round
# (the order rotates from round to round), each run starts a fresh server, warms it up, then
# measures; the summary prints medians and the ratios asock/tokio.
#
#   bash bench/wrk.sh                                   # ROUNDS=5 DURATION=5 CONNS="64 256"
#   ROUNDS=3 DURATION=3 CONNS=64 bash bench/wrk.sh
#   PRIORITY=rt bash bench/wrk.sh                       # server and wrk as SCHED_FIFO (busy machine)
#   python3 bench/wrk_summary.py FILE.tsv               # the summary of a results file again
#
# Environment: ROUNDS (5), DURATION (5 s), WARMUP (1 s), CONNS ("64 256"), SERVERS ("asock
# tokio-ct tokio-mt"), SERVER_CPU (0), LOAD_CPU (1), PRIORITY (rt: chrt -f 10), OUT (the TSV of
# every run; printed at the start).
#
# Per run: requests/s, latency p50/p99 (wrk --latency), server CPU per request (utime+stime of
# the server in /proc/PID/stat over the measured run), and other_cpu_pct: the CPU the rest of
# the machine used during the run, in % of one core (the noise; near 0 on a quiet machine).
set -euo pipefail
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-"64 256"}
SERVERS=${SERVERS:-"asock tokio-ct tokio-mt"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
bin=$CARGO_TARGET_DIR/release
OUT=${OUT:-$(mktemp /tmp/wrk-results.XXXXXX.tsv)}

command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p asock --example hyper_server --features hyper,test-certs &&
    cargo build --release -q -p asock-bench-http-peer)

prio=()
[[ ${PRIORITY:-} == rt ]] && prio=(chrt -f 10)
clk=$(getconf CLK_TCK)

server_cmd() {
    case $1 in
        asock) echo "$bin/examples/hyper_server --threads 1" ;;
        tokio-ct) echo "$bin/hyper-tokio" ;;
        tokio-mt) echo "$bin/hyper-tokio --multi-thread" ;;
        *) echo "unknown server $1" >&2; return 1 ;;
    esac
}

server_pid= log=$(mktemp)
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -f "$log" "$log.wrk" "$log.time"
}
trap cleanup EXIT

start_server() { # NAME -> server_pid, addr
    : >"$log"
    # shellcheck disable=SC2046
    "${prio[@]}" taskset -c "$SERVER_CPU" $(server_cmd "$1") 127.0.0.1:0 >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 200); do
        addr=$(sed -n 's|^Listening on http://||p' "$log" | head -n1)
        [ -n "$addr" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "error: server $1 did not start: $(cat "$log")" >&2
    exit 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime of a process
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }   # all CPUs, not idle/iowait
to_us() { # wrk's "1.23ms" / "456.78us" / "1.02s" -> microseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); print v * 60e6 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1e6 }
        else print v }'
}

echo "results: $OUT"
printf 'round\tserver\tconns\treq_per_s\tp50_us\tp99_us\tserver_cpu_us_per_req\tother_cpu_pct\terrors\n' >"$OUT"
read -r -a servers <<<"$SERVERS"
for r in $(seq "$ROUNDS"); do
    # Rotate the order each round so no server always runs first.
    shift_by=$(((r - 1) % ${#servers[@]}))
    order=("${servers[@]:shift_by}" "${servers[@]:0:shift_by}")
    for c in $CONNS; do
        for s in "${order[@]}"; do
            start_server "$s"
            "${prio[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${WARMUP}s" "http://$addr/" >/dev/null
            s0=$(proc_ticks "$server_pid") b0=$(busy_ticks) t0=$(date +%s.%N)
            TIMEFORMAT='%U %S'
            { time "${prio[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${DURATION}s" --latency "http://$addr/" >"$log.wrk"; } 2>"$log.time"
            s1=$(proc_ticks "$server_pid") b1=$(busy_ticks) t1=$(date +%s.%N)
            stop_server
            rps=$(awk '/^Requests\/sec:/{print $2}' "$log.wrk")
            reqs=$(awk '/requests in/{print $1}' "$log.wrk")
            p50=$(to_us "$(awk '$1=="50%"{print $2}' "$log.wrk")")
            p99=$(to_us "$(awk '$1=="99%"{print $2}' "$log.wrk")")
            errors=$(awk '/Socket errors/{gsub(/,/,""); e += $4 + $6 + $8 + $10} /Non-2xx/{e += $NF} END {print e + 0}' "$log.wrk")
            read -r wu ws <"$log.time"
            read -r cpu other < <(awk -v s="$((s1 - s0))" -v b="$((b1 - b0))" -v w="$wu" -v ws="$ws" \
                -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" -v clk="$clk" -v n="$reqs" 'BEGIN {
                    printf "%.2f %.1f\n", s / clk * 1e6 / n, ((b - s) / clk - w - ws) / t * 100 }')
            [[ $(awk -v o="$other" 'BEGIN{print (o < 0)}') == 1 ]] && other=0.0
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$c" "$rps" "$p50" "$p99" "$cpu" "$other" "$errors" >>"$OUT"
            printf 'round %s  %-8s c=%-4s %10s req/s  p50 %8s us  p99 %8s us  cpu %6s us/req  other %5s%%  errors %s\n' \
                "$r" "$s" "$c" "$rps" "$p50" "$p99" "$cpu" "$other" "$errors"
        done
    done
done
echo
python3 "$root/bench/wrk_summary.py" "$OUT"
