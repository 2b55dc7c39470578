#!/usr/bin/env bash
# send_file benchmark: asock's `file_server` example (`send_file`, i.e. sendfile(2)) against
# `tokio-file` (the same protocol with a 64 KiB read + write_all loop), serving one 256 MiB file
# from the page cache to a reading client (socat, writing to /dev/null). Server pinned to
# SERVER_CPU (0), client to LOAD_CPU (1); servers alternate A B A B over the rounds. Reports
# median MB/s and server CPU per MB, and the asock/tokio ratios.
#
#   bench/sendfile.sh
#   ROUNDS=5 GETS=8 bench/sendfile.sh
#
# Environment: ROUNDS (5), GETS (requests per run, on one connection; 4), SIZE_MIB (256),
# SERVER_CPU (0), LOAD_CPU (1), OUT (TSV of every run), CARGO_TARGET_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-5}
GETS=${GETS:-4}
SIZE_MIB=${SIZE_MIB:-256}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$(mktemp --suffix=.tsv)}
TICKS=$(getconf CLK_TCK)

build
(cd "$ROOT" && cargo build --release --quiet -p asock --example file_server)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$DIR/big"
cat "$DIR/big" >/dev/null # into the page cache

cpu() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

echo "# server round mb_per_s cpu_ms_per_mb" >"$OUT"
for round in $(seq "$ROUNDS"); do
    for server in asock tokio; do
        log=$(mktemp)
        case $server in
            asock) taskset -c "$SERVER_CPU" "$BIN/examples/file_server" "$DIR" 127.0.0.1:0 >"$log" 2>&1 & ;;
            tokio) taskset -c "$SERVER_CPU" "$BIN/tokio-file" 127.0.0.1:0 "$DIR" >"$log" 2>&1 & ;;
        esac
        pid=$!
        for _ in $(seq 100); do grep -q ' at ' "$log" && break; sleep 0.05; done
        addr=$(grep -m1 ' at ' "$log" | awk '{print $NF}')
        c0=$(cpu "$pid")
        t0=$(date +%s.%N)
        got=$(for _ in $(seq "$GETS"); do printf 'GET big\n'; done |
            taskset -c "$LOAD_CPU" socat -t 60 -b 262144 - "TCP:$addr" | taskset -c "$LOAD_CPU" wc -c)
        t1=$(date +%s.%N)
        c1=$(cpu "$pid")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        rm -f "$log"
        row=$(awk -v b="$got" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v k="$TICKS" \
            'BEGIN { mb = b / 1e6; printf "%.1f %.4f", mb / (t1 - t0), (c / k) * 1000 / mb }')
        echo "$server $round $row" >>"$OUT"
        echo "  $server #$round: $got bytes; MB/s, ms CPU/MB: $row" >&2
    done
done

python3 - "$OUT" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
med = lambda s, i: statistics.median(float(r[i]) for r in rows if r[0] == s)
for s in ("asock", "tokio"):
    print(f"{s:6} {med(s, 2):9.1f} MB/s {med(s, 3):8.4f} ms CPU/MB")
print(f"asock/tokio: MB/s x{med('asock', 2) / med('tokio', 2):.2f}, CPU/MB x{med('asock', 3) / med('tokio', 3):.2f}")
PY
