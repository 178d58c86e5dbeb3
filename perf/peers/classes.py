#!/usr/bin/env python3
"""Per-class ratios of thumbd to the fastest peer, from runs of ../shared/bench/peers.sh --split.

usage: classes.py RUN.tsv [RUN.tsv ...]   (written by perf/peers-classes)

In each run, a peer's class figure is its best mode (batch or batch-par); thumbd's (and
`baseline`'s) is its one-process batch. An "all JPEG" / "all PNG" row is the class files over
the summed class walls, per tool. The ratio is thumbd's images/s over the fastest peer's of
the same run; the table gives each run's ratio and their median. Markdown on stdout.
"""
import statistics
import sys
from collections import defaultdict

PEERS = ("vipsthumbnail", "pillow-simd", "sharp")
CANDIDATES = ("thumbd", "baseline")
CLASSES = ("small", "mid", "large")
LABEL = {"small": "< 2 MP", "mid": "2–12 MP", "large": "> 12 MP"}


def load(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]


def walls(rows):
    """{set: {tool: (files, wall_s)}}: peers at their fastest mode, candidates in batch mode."""
    out = defaultdict(dict)
    for r in rows:
        tool, wall, files = r["peer"], float(r["wall_s"]), int(r["files"])
        if tool in CANDIDATES and r["mode"] != "batch":
            continue
        if tool not in PEERS + CANDIDATES or wall <= 0:
            continue
        best = out[r["set"]].get(tool)
        if best is None or wall < best[1]:
            out[r["set"]][tool] = (files, wall)
    return out


def ratios(run):
    """{row: {candidate: ratio}} for one run."""
    sets = dict(run)
    for fmt in ("jpeg", "png"):
        total = defaultdict(lambda: [0, 0.0])
        parts = [sets[f"{fmt}-{c}"] for c in CLASSES if f"{fmt}-{c}" in sets]
        for part in parts:
            for tool, (files, wall) in part.items():
                total[tool][0] += files
                total[tool][1] += wall
        # A tool counts in the total only if it ran every class of the format.
        sets[f"{fmt}-all"] = {t: tuple(v) for t, v in total.items()
                              if all(t in part for part in parts)}
    out = {}
    for name, tools in sets.items():
        rate = {t: files / wall for t, (files, wall) in tools.items()}
        peers = [rate[p] for p in PEERS if p in rate]
        if not peers:
            continue
        fastest = max(peers)
        out[name] = {c: rate[c] / fastest for c in CANDIDATES if c in rate}
    return out


def main():
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    loaded = [load(p) for p in paths]
    runs = [ratios(walls(rows)) for rows in loaded]
    files = {r["set"]: r["files"] for r in loaded[0]}
    order = [f"{fmt}-{c}" for fmt in ("jpeg", "png") for c in CLASSES + ("all",)]
    has_baseline = any("baseline" in row for run in runs for row in run.values())
    head = "| class | thumbd ÷ fastest peer, per run | median |"
    rule = "|---|---|---:|"
    if has_baseline:
        head += " baseline, median |"
        rule += "---:|"
    print(head)
    print(rule)
    for name in order:
        got = [run[name] for run in runs if name in run]
        if not got:
            continue
        fmt, cls = name.split("-")
        if cls == "all":
            label = f"**all {fmt.upper()}**"
        else:
            label = f"{fmt.upper()} {LABEL[cls]} ({files.get(name, '?')})"
        mine = [g["thumbd"] for g in got if "thumbd" in g]
        cells = ", ".join(f"{x:.2f}" for x in mine)
        line = f"| {label} | {cells} | **{statistics.median(mine):.2f}×** |"
        if has_baseline:
            base = [g["baseline"] for g in got if "baseline" in g]
            line += f" {statistics.median(base):.2f}× |" if base else " |"
        print(line)


if __name__ == "__main__":
    main()
