#!/usr/bin/env python3
"""Summarizes a bench/compare.sh results file: medians per server, asock/peer ratios, and the
io_uring floor (servers named uring*) against the mio floor.

usage: bench/summarize.py RESULTS.tsv [--markdown]
"""
import statistics
import sys
from collections import OrderedDict

COLS = ["msgs_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us", "errors",
        "server_cpu_us_per_msg", "server_cpu_pct", "client_cpu_pct", "other_cpu_pct"]


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: summarize.py RESULTS.tsv [--markdown]")
    md = "--markdown" in sys.argv[2:]
    groups = OrderedDict()
    with open(sys.argv[1]) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            placement, scenario, server = parts[0], parts[1], parts[2]
            vals = [num(v) for v in parts[4:]]
            key = (placement, scenario)
            groups.setdefault(key, OrderedDict()).setdefault(server, []).append(vals)

    for (placement, scenario), servers in groups.items():
        med = {}
        for server, runs in servers.items():
            row = {}
            for i, c in enumerate(COLS):
                xs = [r[i] for r in runs if i < len(r) and r[i] is not None]
                row[c] = statistics.median(xs) if xs else None
            row["n"] = len(runs)
            med[server] = row
        where = "server CPU0, load CPU1" if placement == "split" else "server and load on CPU0"
        print(f"\n== {scenario} ({where}; medians of {max(r['n'] for r in med.values())} runs)")
        hdr = ["server", "msgs/s", "MB/s", "p50 us", "p99 us", "p99.9 us",
               "srv us/msg", "srv cpu%", "load cpu%", "noise cpu%", "errors"]
        rows = []
        for server, r in med.items():
            rows.append([server, fmt(r["msgs_per_s"], 0), fmt(r["mb_per_s"], 1),
                         fmt(r["p50_us"], 1), fmt(r["p99_us"], 1), fmt(r["p999_us"], 1),
                         fmt(r["server_cpu_us_per_msg"], 3), fmt(r["server_cpu_pct"], 0),
                         fmt(r["client_cpu_pct"], 0), fmt(r["other_cpu_pct"], 0),
                         fmt(r["errors"], 0)])
        table(hdr, rows, md)
        floor_ratios(med, md)
        ours = next((s for s in med if s.startswith("asock")), None)
        if ours is None:
            continue
        a = med[ours]
        rhdr = [f"{ours} / peer", "msgs/s", "p50", "p99", "srv us/msg"]
        rrows = []
        for server, r in med.items():
            if server == ours:
                continue
            rrows.append([server, ratio(a["msgs_per_s"], r["msgs_per_s"]),
                          ratio(a["p50_us"], r["p50_us"]), ratio(a["p99_us"], r["p99_us"]),
                          ratio(a["server_cpu_us_per_msg"], r["server_cpu_us_per_msg"])])
        table(rhdr, rrows, md)


def floor_ratios(med, md):
    """Each io_uring floor variant (uring*) against the mio floor, when both ran."""
    if "mio" not in med:
        return
    m = med["mio"]
    rows = [[server, ratio(r["msgs_per_s"], m["msgs_per_s"]), ratio(r["p50_us"], m["p50_us"]),
             ratio(r["p99_us"], m["p99_us"]),
             ratio(r["server_cpu_us_per_msg"], m["server_cpu_us_per_msg"])]
            for server, r in med.items() if server.startswith("uring")]
    if rows:
        table(["io_uring / mio", "msgs/s", "p50", "p99", "srv us/msg"], rows, md)


def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def table(hdr, rows, md):
    if md:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "|".join(" --- " for _ in hdr) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print()
        return
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    for r in [hdr] + rows:
        print("  " + "  ".join(str(x).rjust(w) if i else str(x).ljust(w)
                               for i, (x, w) in enumerate(zip(r, widths))))


if __name__ == "__main__":
    main()
