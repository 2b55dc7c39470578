#!/usr/bin/env bash
# Echo benchmark of asock's echo server against tokio, a bare mio loop (the floor) and a bare
# io_uring loop (the io_uring floor, `uring`), in one run: each server pinned to CPU 0, the
# load (`asock bench`) pinned to CPU 1 ("split"), and a variant with both on CPU 0 ("same").
# Servers alternate A B C A B C over the rounds; the summary prints medians, asock/peer ratios
# and io_uring/mio floor ratios, including the server's CPU time per echoed
# message (from /proc/PID/stat over the measured part of each run).
#
#   bench/compare.sh                       # every scenario, both placements (~20 min)
#   QUICK=1 bench/compare.sh               # 2 rounds of 2 s, split placement only (~5 min)
#   SCENARIOS="pp64x16 line64x256" ROUNDS=5 bench/compare.sh
#
# Environment: ROUNDS (3), DURATION seconds per run (5), WARMUP seconds (1), PLACEMENTS
# ("split same"), SCENARIOS (all, see below), SERVERS (raw servers: "asock tokio-ct tokio-mt
# mio uring"; the uring-* variants of bench/lib.sh too), LINE_SERVERS ("asock-lines
# tokio-lines-ct tokio-lines-mt mio uring"), SERVER_CPU (0),
# LOAD_CPU (1), ASOCK_FLAGS (extra `asock echo-server` flags, e.g. "--busy-poll 50"),
# BENCH_FLAGS (extra `asock bench` flags), OUT (results file, TSV), CARGO_TARGET_DIR,
# MAX_NOISE (a run during which the rest of the machine used more than this % of one core is
# thrown away and retried after a pause; default 15) and RETRIES (per run, default 5).
# PRIORITY=rt runs server and load as SCHED_RR (chrt -r 10) so other work on a busy machine
# cannot take their CPUs (set MAX_NOISE=100 with it: the kernel keeps 5% for others);
# PRIORITY=group runs the script in a scheduling group of its own at the highest weight, with
# no RT throttling: use it for p99/p99.9 (see lib.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ -n ${QUICK:-} ]]; then
    ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-2} WARMUP=${WARMUP:-0.5} PLACEMENTS=${PLACEMENTS:-split}
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PLACEMENTS=${PLACEMENTS:-split same}
SCENARIOS=${SCENARIOS:-pp64x1 pp64x16 pp64x256 pp64x1000 pp4kx1 pp4kx16 pp4kx256 pp4kx1000 st64kx1 st64kx16 line64x256}
SERVERS=${SERVERS:-asock tokio-ct tokio-mt mio uring}
LINE_SERVERS=${LINE_SERVERS-asock-lines tokio-lines-ct tokio-lines-mt mio uring}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$(mktemp --suffix=.tsv)}
MAX_NOISE=${MAX_NOISE:-15}
RETRIES=${RETRIES:-5}

# The `asock bench` arguments of a scenario.
scenario_args() {
    case $1 in
        pp64x*) echo "--mode pingpong --size 64 --connections ${1#pp64x}" ;;
        pp4kx*) echo "--mode pingpong --size 4096 --connections ${1#pp4kx}" ;;
        st64kx*) echo "--mode stream --size 65536 --connections ${1#st64kx}" ;;
        line64x*) echo "--lines --mode pingpong --size 64 --connections ${1#line64x}" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

ulimit -n 20000 2>/dev/null || true
build
echo "# placement scenario server round msgs_per_s mb_per_s p50_us p99_us p999_us errors server_cpu_us_per_msg server_cpu_pct client_cpu_pct other_cpu_pct" >"$OUT"
echo "results: $OUT (rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s; load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2

for placement in $PLACEMENTS; do
    load_cpu=$LOAD_CPU
    [[ $placement == same ]] && load_cpu=$SERVER_CPU
    for scenario in $SCENARIOS; do
        args=$(scenario_args "$scenario")
        servers=$SERVERS
        [[ $scenario == line* ]] && servers=$LINE_SERVERS
        for round in $(seq "$ROUNDS"); do
            for server in $servers; do
                for try in $(seq 0 "$RETRIES"); do
                    start_server "$server" "$SERVER_CPU"
                    # shellcheck disable=SC2086
                    line=$("${PRIO[@]}" taskset -c "$load_cpu" "$BIN/asock" bench "$SERVER_ADDR" $args \
                        --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" \
                        ${BENCH_FLAGS:-} 2>/dev/null | grep '^msgs_per_s=' || true)
                    stop_server
                    noise=$(field other_cpu_pct "$line")
                    if [[ -z $line || -z $noise ]] || awk -v n="$noise" -v m="$MAX_NOISE" 'BEGIN { exit !(n <= m) }'; then
                        break
                    fi
                    if ((try == RETRIES)); then
                        echo "  $placement $scenario $server #$round: still ${noise}% noise, kept" >&2
                        break
                    fi
                    echo "  $placement $scenario $server #$round: ${noise}% of a core used by others, retrying" >&2
                    sleep 5
                done
                if [[ -z $line ]]; then
                    echo "  $placement $scenario $server #$round: no result" >&2
                    continue
                fi
                row="$placement $scenario $server $round"
                for k in msgs_per_s mb_per_s p50_us p99_us p999_us errors server_cpu_us_per_msg server_cpu_pct client_cpu_pct other_cpu_pct; do
                    v=$(field "$k" "$line")
                    row+=" ${v:--}"
                done
                echo "$row" >>"$OUT"
                echo "  $row" >&2
            done
        done
    done
done

python3 "$(dirname "$0")/summarize.py" "$OUT"
