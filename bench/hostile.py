#!/usr/bin/env python3
"""Hostile peers against an echo server on 127.0.0.1 (driven by bench/hostile.sh).

  stall PORT PID PEERS BYTES SECS   PEERS connections each send BYTES without a newline and
                                    stall for SECS; a probe client measures line round trips
                                    meanwhile; the server's RSS is sampled before, at the peak
                                    and after the peers leave.
  silent PORT PEERS SECS TRIES      PEERS silent TCP connections (reopened as the server drops
                                    them) held for SECS against a TLS echo server, while an
                                    honest TLS client handshakes and makes one round trip TRIES
                                    times.

Prints one machine-readable line: key=value pairs. Every loop is bounded in count and time.
"""

import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time


def rss_kib(pid, field="VmRSS"):
    """Resident KiB of `pid`: all of it, or `RssAnon` (heap and stacks, not code pages)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/status"):
            return True
    except OSError:
        return False


class Probe(threading.Thread):
    """One line round trip every 100 ms on its own connection (reconnecting if dropped)."""

    def __init__(self, port, tls_ctx=None):
        super().__init__(daemon=True)
        self.port, self.ctx = port, tls_ctx
        self.rtts, self.failures, self.stop = [], 0, False
        # (seconds since the probe started, round trip ms) of each round trip, to place the
        # slow ones in the run's phases.
        self.started, self.timeline = time.monotonic(), []

    def run(self):
        sock = None
        while not self.stop:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                t = time.monotonic()
                sock.sendall(b"ping\n")
                got = b""
                while not got.endswith(b"\n"):
                    b = sock.recv(64)
                    if not b:
                        raise OSError("closed")
                    got += b
                self.rtts.append((time.monotonic() - t) * 1000)
                self.timeline.append((t - self.started, self.rtts[-1]))
            except OSError:
                self.failures += 1
                if sock:
                    sock.close()
                sock = None
            time.sleep(0.1)


def stall(port, pid, peers, nbytes, secs):
    cold = rss_kib(pid)
    # The probe runs in a process of its own: the peers here would hold the GIL from it.
    probe = subprocess.Popen(
        [sys.executable, __file__, "probe", str(port)],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    # The idle figure is a server that has served: the probe's first round trips page in the
    # code of accepting and echoing, which a server that never served has not loaded yet.
    time.sleep(1)
    idle, idle_anon = rss_kib(pid), rss_kib(pid, "RssAnon")
    sel = selectors.DefaultSelector()
    left = {}
    everyone = []
    opened = refused = 0
    deadline = time.monotonic() + 60
    for _ in range(peers):
        try:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE)
            everyone.append(s)
            left[s] = nbytes
            opened += 1
        except OSError:
            refused += 1
    chunk = b"x" * 65536
    peak = idle
    shed = done = 0
    t0 = time.monotonic()
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                n = s.send(chunk[: min(len(chunk), left[s])])
                left[s] -= n
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                shed += 1
                sel.unregister(s)
                del left[s]
                continue
            if left[s] == 0:
                done += 1
                sel.unregister(s)
                del left[s]
        peak = max(peak, rss_kib(pid))
        if not alive(pid):
            break
    sel.close()
    sent_s = time.monotonic() - t0
    hold_end = time.monotonic() + secs
    while time.monotonic() < hold_end and alive(pid):
        peak = max(peak, rss_kib(pid))
        time.sleep(0.2)
    during = rss_kib(pid) if alive(pid) else 0
    unsent = len(left)
    closed_s = time.monotonic() - t0
    for s in everyone:
        s.close()
    time.sleep(5)
    out, _ = probe.communicate("stop\n", timeout=10)
    p = dict(kv.split("=") for kv in out.split())
    after = rss_kib(pid) if alive(pid) else 0
    after_anon = rss_kib(pid, "RssAnon") if alive(pid) else 0
    print(
        f"peers={peers} bytes={nbytes} opened={opened} refused={refused} sent_all={done} "
        f"shed={shed} unsent={unsent} cold_kib={cold} idle_kib={idle} idle_anon_kib={idle_anon} "
        f"peak_kib={peak} held_kib={during} after_kib={after} after_anon_kib={after_anon} alive={int(alive(pid))} probe_n={p['n']} "
        f"probe_fail={p['fail']} probe_p50_ms={p['p50']} probe_max_ms={p['max']} "
        f"probe_slowest={p['slowest_at']} peers_sent_by_s={sent_s:.1f} peers_closed_at_s={closed_s:.1f}"
    )


def silent(port, peers, secs, tries):
    conns = []
    stop = time.monotonic() + secs
    sel = selectors.DefaultSelector()

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ)
        conns.append(s)

    for _ in range(peers):
        open_one()
    reopened = 0

    def keeper():
        nonlocal reopened
        while time.monotonic() < stop:
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    if s.recv(1024):
                        continue
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                sel.unregister(s)
                s.close()
                open_one()
                reopened += 1

    t = threading.Thread(target=keeper, daemon=True)
    t.start()
    time.sleep(2)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    times, fails = [], 0
    for _ in range(tries):
        start = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"hello\n")
                    got = b""
                    while not got.endswith(b"\n"):
                        b = s.recv(64)
                        if not b:
                            break
                        got += b
                    if got.strip() != b"hello":
                        raise OSError(f"bad echo {got!r}")
            times.append((time.monotonic() - start) * 1000)
        except OSError as e:
            fails += 1
            print(f"honest client failed: {e}", file=sys.stderr)
        time.sleep(max(0.0, (secs - 2) / tries - 0.05))
    t.join(timeout=secs + 5)
    times.sort()
    times = times or [0]
    print(
        f"silent={peers} reopened={reopened} tries={tries} fails={fails} "
        f"p50_ms={statistics.median(times):.1f} max_ms={times[-1]:.1f} "
        f"over_200ms={sum(1 for x in times if x >= 200)}"
    )


def probe_main(port):
    probe = Probe(port)
    probe.start()
    sys.stdin.readline()
    probe.stop = True
    probe.join(timeout=5)
    rtts = sorted(probe.rtts) or [0]
    slow = sorted(probe.timeline, key=lambda x: -x[1])[:3]
    print(
        f"n={len(probe.rtts)} fail={probe.failures} p50={statistics.median(rtts):.2f} "
        f"max={rtts[-1]:.2f} slowest_at={','.join(f'{t:.1f}s:{ms:.0f}' for t, ms in slow)}"
    )


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "probe":
        probe_main(int(sys.argv[2]))
    elif mode == "stall":
        stall(*(int(a) for a in sys.argv[2:7]))
    elif mode == "silent":
        silent(*(int(a) for a in sys.argv[2:6]))
    else:
        sys.exit(f"unknown mode {mode}")
