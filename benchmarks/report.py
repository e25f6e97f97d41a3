"""Turn per-round results into medians, ratios to the Tornado handler, targets, JSON, PNG, markdown."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

BASELINE = "tornado"
LABELS = {
    "engine": "in-process engine",
    "tornado": "(a) Tornado handler",
    "daphne": "(b) ours, daphne (our launch)",
    "daphne-stock": "(b') ours, daphne (its own command)",
    "uvicorn": "(c) ours, uvicorn (our protocol)",
    "uvicorn-stock": "(c') ours, uvicorn (its own protocol)",
}
SERVERS = ("tornado", "daphne", "daphne-stock", "uvicorn", "uvicorn-stock")
TARGETED = ("daphne", "uvicorn")  # the targets; the stock commands are shown for comparison
# (workload, metric, unit, higher_is_better)
ROWS = [
    ("viewport", "p50_ms", "ms", False),
    ("viewport", "p99_ms", "ms", False),
    ("viewport", "server_cpu_us_per_req", "us CPU", False),
    ("throughput", "requests_per_s", "req/s", True),
    ("throughput", "p99_ms", "ms", False),
    ("throughput", "server_cpu_us_per_req", "us CPU", False),
    ("bulk", "mb_per_s", "MB/s", True),
    ("fanout", "p50_ms", "ms", False),
    ("fanout", "p99_ms", "ms", False),
    ("fanout", "lost", "updates", False),
    ("head_of_line", "small_ms", "ms", False),
    ("head_of_line", "heavy_ms", "ms", False),
    ("head_of_line", "small_first", "fraction", True),
    ("idle_memory", "kb_per_connection", "KB", False),
]


def medians(raw: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{workload: {server: {metric: median over rounds}}}``."""
    return {
        workload: {
            server: {metric: statistics.median(r[metric] for r in rounds) for metric in rounds[0]}
            for server, rounds in by_server.items()
            if rounds
        }
        for workload, by_server in raw.items()
    }


def ratio(med: dict[str, Any], workload: str, metric: str, server: str) -> float:
    try:
        base = med[workload][BASELINE][metric]
        value = med[workload][server][metric]
    except KeyError:
        return math.nan
    return value / base if base else math.nan


def paired(raw: dict[str, Any], workload: str, metric: str, server: str) -> list[float]:
    """Round n of ``server`` over round n of the baseline, sorted: the rounds are interleaved,
    so each pair saw the same minute of the machine, and their spread is the run's noise."""
    try:
        pairs = zip(raw[workload][BASELINE], raw[workload][server])
    except KeyError:
        return []
    return sorted(ours[metric] / base[metric] for base, ours in pairs if base[metric])


def targets(med: dict[str, Any], raw: dict[str, Any] | None = None) -> list[tuple[str, str, bool | None]]:
    """The issue's targets as (target, measured, met); ``met`` is None when not measured.

    ``measured`` is the ratio of the medians (what the targets are judged on), followed by
    the range of the paired per-round ratios when ``raw`` is given.
    """
    out: list[tuple[str, str, bool | None]] = []

    def check(name: str, workload: str, metric: str, server: str, limit: float, higher: bool) -> None:
        r = ratio(med, workload, metric, server)
        met = None if math.isnan(r) else (r >= limit if higher else r <= limit)
        rounds = paired(raw, workload, metric, server) if raw else []
        spread = f" (rounds {rounds[0]:.2f}-{rounds[-1]:.2f}x)" if len(rounds) > 1 else ""
        out.append((name, "not measured" if met is None else f"{r:.2f}x{spread}", met))

    for server in TARGETED:
        check(f"{server}: viewport p50 <= 1.0x", "viewport", "p50_ms", server, 1.0, False)
        check(f"{server}: viewport p99 <= 1.1x", "viewport", "p99_ms", server, 1.1, False)
        check(f"{server}: 20-client throughput >= 1.0x", "throughput", "requests_per_s", server, 1.0, True)
        check(f"{server}: server CPU per request (20 clients) <= 1.1x", "throughput", "server_cpu_us_per_req", server, 1.1, False)
        check(f"{server}: bulk MB/s >= 1.0x", "bulk", "mb_per_s", server, 1.0, True)
        check(f"{server}: fan-out delivery p99 <= 1.0x", "fanout", "p99_ms", server, 1.0, False)
        lost = med.get("fanout", {}).get(server, {}).get("lost")
        out.append((f"{server}: fan-out 0 lost updates", f"{lost}", None if lost is None else lost == 0))
        first = med.get("head_of_line", {}).get(server, {}).get("small_first")
        out.append(
            (f"{server}: small request answered before the heavy one", f"{first}",
             None if first is None else first == 1.0)
        )
        kb = med.get("idle_memory", {}).get(server, {}).get("kb_per_connection")
        out.append(
            (f"{server}: idle connection <= 200 KB RSS", f"{kb:.0f} KB" if kb is not None else "-",
             None if kb is None else kb <= 200)
        )
    return out


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(meta: dict[str, Any], med: dict[str, Any], raw: dict[str, Any] | None = None) -> str:
    servers = [s for s in SERVERS if any(s in w for w in med.values())]
    head = ["workload", "metric"] + [LABELS[s] for s in servers] + [
        f"{s} / (a)" for s in servers if s != BASELINE
    ]
    lines = [
        f"Rows: {meta['rows']:,} - rounds interleaved and rotated (A B C, B C A, ...) - {meta['date']} - "
        f"{meta['cpus']} CPUs, load {meta['load_before']} - perspective {meta['versions']['perspective']}, "
        f"daphne {meta['versions']['daphne']}, uvicorn {meta['versions']['uvicorn']}, "
        f"tornado {meta['versions']['tornado']}{' - QUICK run' if meta['quick'] else ''}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    if "engine" in med.get("viewport", {}):
        for metric in ("p50_ms", "p99_ms"):
            floor = med["viewport"]["engine"][metric]
            lines.append(
                f"| viewport floor (in-process engine) | {metric} | {_fmt(floor)} |"
                + " |" * (len(head) - 3)
            )
    for workload, metric, unit, higher in ROWS:
        if workload not in med:
            continue
        values = [med[workload].get(s, {}).get(metric) for s in servers]
        ratios = [ratio(med, workload, metric, s) for s in servers if s != BASELINE]
        arrow = "higher is better" if higher else "lower is better"
        lines.append(
            f"| {workload} | {metric} ({unit}, {arrow}) | "
            + " | ".join(_fmt(v) for v in values)
            + " | "
            + " | ".join(f"{r:.2f}x" if not math.isnan(r) else "-" for r in ratios)
            + " |"
        )
    lines += ["", "| target (ratio to (a) in the same run) | measured: ratio of medians (paired rounds) | met |", "|---|---|---|"]
    for name, measured, met in targets(med, raw):
        lines.append(f"| {name} | {measured} | {'-' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines) + "\n"


def plot(raw: dict[str, Any], med: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(w, m, u, h) for w, m, u, h in ROWS if w in med and "cpu" not in m and m != "small_first"]
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(13, 3.2 * math.ceil(len(panels) / cols)))
    colours = {"engine": "#999999", "tornado": "#4c72b0", "daphne": "#dd8452", "daphne-stock": "#f2c49b", "uvicorn": "#55a868",
               "uvicorn-stock": "#a6d8b0"}
    for ax, (workload, metric, unit, higher) in zip(axes.flat, panels):
        servers = [s for s in ("engine", *SERVERS) if s in med[workload]]
        for i, server in enumerate(servers):
            ax.bar(i, med[workload][server][metric], color=colours[server])
            points = [r[metric] for r in raw[workload][server]]
            ax.scatter([i] * len(points), points, color="black", s=8, zorder=3)
        ax.set_xticks(range(len(servers)), [s for s in servers], fontsize=8)
        ax.set_title(f"{workload}: {metric} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(out: Path, stem: str, meta: dict[str, Any], raw: dict[str, Any]) -> str:
    med = medians(raw)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "medians": med, "rounds": raw, "targets": targets(med, raw)}, indent=1)
    )
    table = markdown(meta, med, raw)
    (out / f"{stem}.md").write_text(table)
    plot(raw, med, out / f"{stem}.png")
    return table
