#!/usr/bin/env bash
# Scaling across cores: asock's echo server with 1..N event loops (one listener per loop)
# against tokio `multi_thread` with the same number of workers, for ping-pong (msgs/s, latency)
# and connection churn (connect, one 64 B echo, close: connections/s), alternated A B A B over
# the rounds; prints medians and asock/tokio ratios.
#
#   bench/scaling.sh                         # loops 1, 2, 4, ... up to the CPU count
#   LOOPS="1 2" ROUNDS=5 bench/scaling.sh
#
# Placement: with k loops the server gets CPUs 0..k-1 and the load the next k CPUs. When the
# machine has fewer than 2k CPUs the load cannot have CPUs of its own: the script says so and
# runs the load unpinned, sharing the server's CPUs (figures then measure both together).
#
# Environment: LOOPS (1, 2, 4, ... and the CPU count, up to it), ROUNDS (3), DURATION seconds
# per run (5), WARMUP (1), SCENARIOS ("pingpong churn"), CONNECTIONS for ping-pong (256),
# CLIENTS for churn (64), SERVERS ("asock tokio-mt"), OUT (TSV), PRIORITY=rt (see lib.sh),
# CHURN_TOTAL (after the rounds: this many churned connections against asock with the most
# loops, checking that its descriptors and memory do not grow; 0 skips; default 100000),
# SOURCES (churn clients connect from this many loopback addresses, 127.0.0.2 up; default 64;
# 1 = from 127.0.0.1 only, where the client's search for a free port among its TIME_WAIT
# connections caps churn at about 14,000 connections/s for any server on this machine).
# PRIORITY=group (lib.sh) is the steadier choice for the latency columns.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CPUS=$(nproc)
if [[ -z ${LOOPS:-} ]]; then
    LOOPS=""
    for ((k = 1; k < CPUS; k *= 2)); do LOOPS+="$k "; done
    LOOPS+="$CPUS"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-pingpong churn}
CONNECTIONS=${CONNECTIONS:-256}
CLIENTS=${CLIENTS:-64}
SERVERS=${SERVERS:-asock tokio-mt}
OUT=${OUT:-$(mktemp --suffix=.tsv)}
CHURN_TOTAL=${CHURN_TOTAL:-100000}
SOURCES=${SOURCES:-64}
TICK=$(getconf CLK_TCK)

ulimit -n 20000 2>/dev/null || true
build

# The command of server NAME with K loops/workers.
scaling_cmd() {
    case $1 in
        asock) echo "$BIN/asock echo-server --raw --threads $2" ;;
        tokio-mt) echo "$BIN/tokio-echo --multi-thread --threads $2" ;;
        *) echo "unknown server $1" >&2; return 1 ;;
    esac
}

# start NAME K CPUS: like lib.sh's start_server, with K loops on the CPU list CPUS.
start() {
    SERVER_LOG=$(mktemp)
    # shellcheck disable=SC2046
    "${PRIO[@]}" taskset -c "$3" $(scaling_cmd "$1" "$2") 127.0.0.1:0 >"$SERVER_LOG" 2>/dev/null &
    SERVER_PID=$!
    local i
    for i in $(seq 100); do
        if grep -q '^Started' "$SERVER_LOG"; then
            SERVER_ADDR=$(grep -m1 '^Started' "$SERVER_LOG" | awk '{print $NF}')
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "error: server $1 did not start" >&2
    return 1
}

# CPU time (seconds) of process PID so far, all threads.
cpu_secs() {
    awk -v t="$TICK" '{ print ($14 + $15) / t }' "/proc/$1/stat"
}

echo "# loops scenario server round rate p50_us p99_us p999_us errors server_cpu_us_per_op" >"$OUT"
echo "results: $OUT (cpus=$CPUS loops=\"$LOOPS\" rounds=$ROUNDS duration=${DURATION}s sources=$SOURCES; load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2

for k in $LOOPS; do
    server_cpus="0-$((k - 1))"
    load=("${PRIO[@]}" taskset -c "$k-$((2 * k - 1))")
    if ((2 * k > CPUS)); then
        echo "note: $k loop(s) on a $CPUS-CPU machine: the load cannot get CPUs of its own," \
            "so it runs unpinned and shares the server's CPUs (a machine with $((2 * k)) CPUs gives clean figures)" >&2
        server_cpus="0-$((k > CPUS ? CPUS - 1 : k - 1))"
        load=("${PRIO[@]}")
    fi
    for scenario in $SCENARIOS; do
        for round in $(seq "$ROUNDS"); do
            for server in $SERVERS; do
                start "$server" "$k" "$server_cpus"
                case $scenario in
                    pingpong)
                        line=$("${load[@]}" "$BIN/asock" bench "$SERVER_ADDR" --mode pingpong --size 64 \
                            --connections "$CONNECTIONS" --threads "$k" --duration "$DURATION" \
                            --warmup "$WARMUP" --server-pid "$SERVER_PID" 2>/dev/null | grep '^msgs_per_s=' || true)
                        row="$(field msgs_per_s "$line") $(field p50_us "$line") $(field p99_us "$line") $(field p999_us "$line") $(field errors "$line") $(field server_cpu_us_per_msg "$line")"
                        ;;
                    churn)
                        before=$(cpu_secs "$SERVER_PID")
                        line=$("${load[@]}" "$BIN/churn-load" "$SERVER_ADDR" --clients "$CLIENTS" --threads "$k" \
                            --sources "$SOURCES" --duration "$DURATION" --warmup "$WARMUP" 2>/dev/null | tail -1 || true)
                        after=$(cpu_secs "$SERVER_PID")
                        conns=$(field conns "$line")
                        # Server CPU over warm-up and run, per measured connection (an upper bound).
                        per=$(awk -v a="$after" -v b="$before" -v n="${conns:-0}" -v d="$DURATION" -v w="$WARMUP" \
                            'BEGIN { if (n > 0) printf "%.2f", (a - b) * 1e6 / (n * (d + w) / d); else print "-" }')
                        row="$(field conns_per_s "$line") $(field p50_us "$line") $(field p99_us "$line") $(field p999_us "$line") $(field errors "$line") $per"
                        ;;
                    *) echo "unknown scenario $scenario" >&2; exit 1 ;;
                esac
                stop_server
                [[ -z $line ]] && { echo "  $k $scenario $server #$round: no result" >&2; continue; }
                echo "$k $scenario $server $round $row" >>"$OUT"
                echo "  $k $scenario $server #$round: $row" >&2
            done
        done
    done
done

python3 - "$OUT" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    k, scen, srv, _round, *vals = line.split()
    rows[(int(k), scen, srv)].append(vals)
def med(vs, i):
    xs = [float(v[i]) for v in vs if v[i] not in ("-", "")]
    return statistics.median(xs) if xs else float("nan")
unit = {"pingpong": "msgs/s", "churn": "conns/s"}
for scen in ("pingpong", "churn"):
    keys = sorted({(k, s) for (k, sc, s) in rows if sc == scen})
    if not keys:
        continue
    print(f"\n== {scen} ({unit[scen]}; medians)")
    print(f"  loops  server    {unit[scen]:>9}  p50 us  p99 us  p99.9 us  srv us/op  errors")
    for k, s in keys:
        vs = rows[(k, scen, s)]
        print(f"  {k:5d}  {s:8s}  {med(vs,0):9.0f}  {med(vs,1):6.0f}  {med(vs,2):6.0f}  {med(vs,3):8.0f}  {med(vs,5):9.2f}  {med(vs,4):6.0f}")
    for k in sorted({k for k, _ in keys}):
        a, t = rows.get((k, scen, "asock")), rows.get((k, scen, "tokio-mt"))
        if a and t:
            print(f"  {k} loop(s): asock/tokio-mt {unit[scen]} {med(a,0)/med(t,0):.2f}x, p99 {med(a,2)/med(t,2):.2f}x, srv us/op {med(a,5)/med(t,5):.2f}x")
EOF

if ((CHURN_TOTAL > 0)); then
    k=${LOOPS##* }
    start asock "$k" "0-$((k > CPUS ? CPUS - 1 : k - 1))"
    # Warm up (pools and first allocations), then count descriptors and RSS around the run.
    "$BIN/churn-load" "$SERVER_ADDR" --clients "$CLIENTS" --sources "$SOURCES" --total 2000 >/dev/null
    fds0=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    rss0=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status")
    line=$("$BIN/churn-load" "$SERVER_ADDR" --clients "$CLIENTS" --threads "$k" --sources "$SOURCES" \
        --total "$CHURN_TOTAL" | tail -1)
    sleep 0.5
    fds1=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status")
    stop_server
    echo
    echo "== churn of $CHURN_TOTAL connections, asock with $k loop(s): $line"
    echo "  descriptors: $fds0 before, $fds1 after; RSS: $rss0 KiB before, $rss1 KiB after ($((rss1 - rss0)) KiB)"
fi
