#!/usr/bin/env python3
"""Summary of a bench/wrk.sh results file: medians per server and connection count, and the
ratios of asock to each tokio server (requests/s: higher is better for asock above 1.0; p99 and
CPU per request: lower is better for asock below 1.0).

    python3 bench/wrk_summary.py RESULTS.tsv [--markdown]
"""
import csv
import statistics
import sys
from collections import defaultdict


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    markdown = "--markdown" in sys.argv
    if len(args) != 1:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(args[0]), delimiter="\t"))
    if not rows:
        sys.exit("no results in " + args[0])
    keys = ["req_per_s", "p50_us", "p99_us", "server_cpu_us_per_req", "other_cpu_pct"]
    runs = defaultdict(lambda: defaultdict(list))
    errors = defaultdict(int)
    servers, conns = [], []
    for row in rows:
        s, c = row["server"], int(row["conns"])
        servers += [s] if s not in servers else []
        conns += [c] if c not in conns else []
        for k in keys:
            runs[(s, c)][k].append(float(row[k]))
        errors[(s, c)] += int(row["errors"])
    med = {sc: {k: statistics.median(v) for k, v in d.items()} for sc, d in runs.items()}
    rounds = max(len(d["req_per_s"]) for d in runs.values())

    print(f"medians of {rounds} rounds (wrk -t1, keep-alive, GET /)")
    head = ["conns", "server", "req/s", "p50 us", "p99 us", "server CPU us/req", "other CPU %", "errors"]
    table = []
    for c in sorted(conns):
        for s in servers:
            m = med.get((s, c))
            if m:
                table.append([str(c), s, f"{m['req_per_s']:,.0f}", f"{m['p50_us']:.0f}", f"{m['p99_us']:.0f}",
                              f"{m['server_cpu_us_per_req']:.2f}", f"{m['other_cpu_pct']:.1f}",
                              str(errors[(s, c)])])
    show(head, table, markdown)

    if "asock" in servers:
        print()
        head = ["conns", "asock / peer", "req/s", "p99", "server CPU/req", "req/s range asock", "req/s range peer"]
        table = []
        for c in sorted(conns):
            a = med.get(("asock", c))
            for s in servers:
                p = med.get((s, c))
                if s == "asock" or not a or not p:
                    continue
                ra, rp = runs[("asock", c)]["req_per_s"], runs[(s, c)]["req_per_s"]
                table.append([str(c), s, f"{a['req_per_s'] / p['req_per_s']:.2f}", f"{a['p99_us'] / p['p99_us']:.2f}",
                              f"{a['server_cpu_us_per_req'] / p['server_cpu_us_per_req']:.2f}",
                              f"{min(ra):,.0f}-{max(ra):,.0f}", f"{min(rp):,.0f}-{max(rp):,.0f}"])
        show(head, table, markdown)


def show(head, table, markdown):
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" for _ in head) + " |")
        for row in table:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]
    for row in [head] + table:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
