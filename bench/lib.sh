# Shared helpers of the bench/ scripts (sourced, not run).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release

# Builds the `asock` binary and the peer servers (release, with debug info for profiles).
build() {
    local wrap=()
    # Under PRIORITY=group the build leaves the boosted group (a session of its own, at nice 19).
    [[ ${PRIORITY:-} == group ]] && wrap=(setsid -w nice -n 19)
    (cd "$ROOT" && "${wrap[@]}" cargo build --release --quiet -p asock-cli -p asock-bench-peers)
}

# The command line of a named server. Raw echo: asock, tokio-ct, tokio-mt, mio (the floor),
# uring (the io_uring floor, every feature on). Line echo: asock-lines, tokio-lines-ct,
# tokio-lines-mt. With BASE_BIN: asock-base and asock-lines-base, the same servers built from
# another commit. The io_uring floor with features turned on one by one (bench/README.md):
# uring-base (single-shot accept/recv into per-connection buffers, no setup flags, ordinary
# descriptors), uring-ms (+ multishot accept/recv with the buffer ring), uring-coop
# (+ COOP_TASKRUN), uring-single (+ SINGLE_ISSUER), uring-defer (DEFER_TASKRUN instead of
# COOP_TASKRUN), then uring (+ fixed descriptors and ring fd); uring-each is uring with one
# io_uring_enter per queued entry instead of one per loop turn; uring-b64 is uring with 64
# ring buffers instead of 1,024 (a smaller working set, more receives re-armed for lack of one).
server_cmd() {
    case $1 in
        asock) echo "$BIN/asock echo-server --raw --threads 1 ${ASOCK_FLAGS:-}" ;;
        asock-lines) echo "$BIN/asock echo-server --threads 1 ${ASOCK_FLAGS:-}" ;;
        tokio-ct) echo "$BIN/tokio-echo" ;;
        tokio-mt) echo "$BIN/tokio-echo --multi-thread" ;;
        tokio-lines-ct) echo "$BIN/tokio-lines" ;;
        tokio-lines-mt) echo "$BIN/tokio-lines --multi-thread" ;;
        mio) echo "$BIN/mio-echo" ;;
        uring) echo "$BIN/uring-echo" ;;
        uring-base) echo "$BIN/uring-echo --setup plain --single-shot --no-fixed" ;;
        uring-ms) echo "$BIN/uring-echo --setup plain --no-fixed" ;;
        uring-coop) echo "$BIN/uring-echo --setup coop --no-fixed" ;;
        uring-single) echo "$BIN/uring-echo --setup single --no-fixed" ;;
        uring-defer) echo "$BIN/uring-echo --setup defer --no-fixed" ;;
        uring-each) echo "$BIN/uring-echo --submit-each" ;;
        uring-b64) echo "$BIN/uring-echo --buffers 64" ;;
        # The same echo servers from another build (BASE_BIN=/path/to/other/target/release), to
        # measure a change against the commit before it in one alternating run.
        asock-base) echo "${BASE_BIN:?set BASE_BIN}/asock echo-server --raw --threads 1 ${ASOCK_FLAGS:-}" ;;
        asock-lines-base) echo "${BASE_BIN:?set BASE_BIN}/asock echo-server --threads 1 ${ASOCK_FLAGS:-}" ;;
        # TLS raw echo (certificates in $TLS_DIR, see tls_certs); asock-tls-base from BASE_BIN.
        asock-tls) echo "$BIN/asock echo-server --raw --threads 1 --tls-cert $TLS_DIR/server.pem --tls-key $TLS_DIR/server.key ${ASOCK_FLAGS:-}" ;;
        tokio-tls) echo "$BIN/tokio-tls-echo $TLS_DIR/server.pem $TLS_DIR/server.key" ;;
        asock-tls-base) echo "${BASE_BIN:?set BASE_BIN}/asock echo-server --raw --threads 1 --tls-cert $TLS_DIR/server.pem --tls-key $TLS_DIR/server.key ${ASOCK_FLAGS:-}" ;;
        *) echo "unknown server $1" >&2; return 1 ;;
    esac
}

# tls_certs: builds asock and the TLS peers, and writes a test CA and server certificate into a
# fresh $TLS_DIR (removed at exit) for the -tls servers.
tls_certs() {
    (cd "$ROOT" && cargo build --release --quiet -p asock-cli -p asock-bench-tls-peer)
    TLS_DIR=$(mktemp -d)
    trap 'rm -rf "$TLS_DIR"' EXIT
    "$BIN/asock" cert --out "$TLS_DIR" >/dev/null
    export TLS_DIR
}

# PRIORITY=rt runs servers and load as SCHED_RR (chrt -r 10): on a machine that other work
# keeps busy they then preempt it, at the price of the kernel's RT throttling (5% of each second
# is left to others, which shows as stalls in the highest percentiles). Round-robin, not FIFO:
# under SCHED_FIFO a load thread that never blocks (stream mode) kept the load generator's own
# main thread, which ends the run, off its CPU for good.
#
# PRIORITY=group instead runs the whole script in a scheduling group of its own with the
# highest weight (a new session, whose autogroup gets nice -20): ordinary CFS scheduling, no
# throttling, while other work gets about 1% of a CPU the benchmark wants. Prefer it for
# latency percentiles: under PRIORITY=rt the kernel's RT throttling (`sched_rt_runtime_us`,
# 950 ms of each second) stops server and load for ~50 ms about once a second, which set
# p99.9 at 256 and 1,000 connections (max ~65 ms, p99.9 = 50 ms + p50) for every server. With
# autogroups on (`kernel.sched_autogroup_enabled`), `nice` inside a session does not help
# against another session's work; this does.
PRIO=()
if [[ ${PRIORITY:-} == rt ]]; then
    PRIO=(chrt -r 10)
elif [[ ${PRIORITY:-} == group ]]; then
    if [[ -z ${ASOCK_BENCH_GROUP:-} ]]; then
        ASOCK_BENCH_GROUP=1 exec setsid -w bash "$0" "$@"
    fi
    if ! echo -20 >/proc/self/autogroup 2>/dev/null; then
        echo "note: PRIORITY=group: could not raise this session's autogroup (needs root and autogroups); running at normal weight" >&2
    fi
fi

# start_server NAME CPU [WRAPPER...]: starts it on 127.0.0.1:0 pinned to CPU; sets SERVER_PID
# and SERVER_ADDR (from its `Started ... at ADDR` line).
start_server() {
    local name=$1 cpu=$2
    shift 2
    SERVER_LOG=$(mktemp)
    # shellcheck disable=SC2046
    "${PRIO[@]}" taskset -c "$cpu" "$@" $(server_cmd "$name") 127.0.0.1:0 >"$SERVER_LOG" 2>&1 &
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
    echo "error: server $name did not start: $(cat "$SERVER_LOG")" >&2
    return 1
}

# Stops the server started last.
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$SERVER_LOG"
}

# field KEY LINE: the value of KEY=... in a machine-readable line.
field() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}
