#!/usr/bin/env bash
# Syscalls per echoed message of each echo server, counted with `strace -f -c` or, with
# TOOL=perf, with the kernel's syscall tracepoints (`perf stat`) at full speed.
#
# Each server is run twice under strace with the same connections, once echoing N messages and
# once 2N (`asock bench --messages`); the difference of the two counts, divided by N, is the cost
# of an echo with start-up, accepts and shutdowns cancelled out. The floor with epoll is 2 per
# message (one read, one write) plus the share of epoll_wait calls.
#
#   bench/syscalls.sh
#   MESSAGES=50000 CONNECTIONS=256 SERVERS="asock mio" bench/syscalls.sh
#
# Environment: MESSAGES (N, default 20000), CONNECTIONS (16), SIZE (64), SERVERS (raw echo:
# "asock tokio-ct tokio-mt mio uring"), LINE_SERVERS (line echo with --lines messages:
# "asock-lines tokio-lines-ct"), SERVER_CPU (0), LOAD_CPU (1), TOOL (strace or perf),
# CARGO_TARGET_DIR.
#
# strace slows the server a lot, which lets more events gather per epoll_wait (or per
# io_uring_enter) than at full speed: read those shares as lower bounds; reads and writes per
# message are exact. TOOL=perf counts at full speed (every system call, the common ones by
# name, the rest as "other"); it needs perf and tracepoints (root).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MESSAGES=${MESSAGES:-20000}
CONNECTIONS=${CONNECTIONS:-16}
SIZE=${SIZE:-64}
SERVERS=${SERVERS:-asock tokio-ct tokio-mt mio uring}
LINE_SERVERS=${LINE_SERVERS-asock-lines tokio-lines-ct}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TOOL=${TOOL:-strace}
# TOOL=perf: every system call, and these by name.
PERF_EVENTS=raw_syscalls:sys_enter
for call in read write recvfrom sendto readv writev epoll_wait epoll_pwait io_uring_enter \
    accept4 close shutdown epoll_ctl futex; do
    PERF_EVENTS+=,syscalls:sys_enter_$call
done

if [[ $TOOL == perf ]]; then
    command -v perf >/dev/null || { echo "error: TOOL=perf needs perf (linux-perf)" >&2; exit 1; }
elif ! command -v strace >/dev/null; then
    echo "installing strace" >&2
    apt-get install -y strace >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y strace >/dev/null; }
fi
build
WORK=$(mktemp -d)

# count NAME MESSAGES LINESFLAG: runs NAME under strace (or perf stat) for MESSAGES echoes;
# the summary is left in $WORK/NAME.MESSAGES.
count() {
    local name=$1 n=$2 lines=$3 out=$WORK/$1.$2
    if [[ $TOOL == perf ]]; then
        start_server "$name" "$SERVER_CPU" perf stat -x, -o "$out" -e "$PERF_EVENTS"
    else
        start_server "$name" "$SERVER_CPU" strace -f -c -o "$out"
    fi
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$BIN/asock" bench "$SERVER_ADDR" --connections "$CONNECTIONS" \
        --size "$SIZE" --messages "$n" $lines >/dev/null
    # Stop the traced server (strace's or perf's child); the tracer then writes its summary and
    # exits.
    local child
    child=$(pgrep -P "$SERVER_PID" | head -1)
    kill "$child" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$SERVER_LOG"
}

echo "syscalls per echoed message ($CONNECTIONS connections, $SIZE B, difference of $MESSAGES and $((2 * MESSAGES)) messages, $TOOL)"
for spec in $(for s in $SERVERS; do echo "$s:"; done; for s in $LINE_SERVERS; do echo "$s:--lines"; done); do
    name=${spec%%:*}
    lines=${spec#*:}
    count "$name" "$MESSAGES" "$lines"
    count "$name" "$((2 * MESSAGES))" "$lines"
    python3 - "$name${lines:+ (lines)}" "$MESSAGES" "$WORK/$name.$MESSAGES" "$WORK/$name.$((2 * MESSAGES))" "$TOOL" <<'PY'
import sys

def parse(path):
    calls, errors = {}, {}
    if sys.argv[5] == "perf":
        # perf stat -x, lines: COUNT,UNIT,EVENT,...
        total = 0
        for line in open(path):
            f = line.strip().split(",")
            if len(f) < 3 or not f[0].isdigit():
                continue
            if f[2] == "raw_syscalls:sys_enter":
                total = int(f[0])
            elif f[2].startswith("syscalls:sys_enter_"):
                calls[f[2][len("syscalls:sys_enter_"):]] = int(f[0])
        calls["other"] = total - sum(calls.values())
        return calls, errors
    for line in open(path):
        f = line.split()
        if len(f) < 5 or not f[0][0].isdigit() or f[-1] == "total":
            continue
        name = f[-1]
        calls[name] = int(f[3])
        errors[name] = int(f[4]) if len(f) == 6 else 0
    return calls, errors

label, n = sys.argv[1], int(sys.argv[2])
c1, e1 = parse(sys.argv[3])
c2, e2 = parse(sys.argv[4])
per = {k: (c2.get(k, 0) - c1.get(k, 0)) / n for k in set(c1) | set(c2)}
err = {k: (e2.get(k, 0) - e1.get(k, 0)) / n for k in set(e1) | set(e2)}
total = sum(per.values())
parts = ", ".join(
    f"{k} {v:.3f}" + (f" ({err[k]:.3f} failed)" if err.get(k, 0) > 0.0005 else "")
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.0005)
print(f"  {label:24} {total:6.3f} per message: {parts}")
PY
done
rm -rf "$WORK"
