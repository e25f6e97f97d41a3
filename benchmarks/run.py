"""Run the benchmark suite: ``python -m benchmarks.run [--rows N] [--quick] [--only W ...]``.

Starts Perspective's Tornado handler and our consumer under daphne - this app's launch
(``python -m django_perspective.serve``) and daphne's own command (``daphne-stock``) - and
under uvicorn, side by side on loopback, then runs every workload round by round across the
servers (A B C, then B C A, C A B) so machine noise hits all alike. Prints the medians and ratios to the
Tornado handler and writes ``benchmarks/results/latest.{json,md,png}`` (``latest-quick.*`` with ``--quick``,
``latest-partial.*`` with ``--only`` or ``--servers``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import report, workloads
from tests.servers import migrate

from .servers import ROOT, ServerProcess, servers

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = ["idle_memory", "viewport", "throughput", "bulk", "head_of_line", "fanout"]


def plan(quick: bool) -> dict[str, Any]:
    """Rounds and durations; ``--quick`` keeps every workload but shrinks each."""
    if quick:
        return {"viewport": 3, "throughput": 3, "throughput_s": 2.0, "bulk": 2, "head_of_line": 2,
                "fanout": 2, "fanout_s": 3.0, "idle_connections": 200}
    return {"viewport": 9, "throughput": 5, "throughput_s": 5.0, "bulk": 7, "head_of_line": 3,
            "fanout": 3, "fanout_s": 10.0, "idle_connections": 1000}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def measure(procs: list[ServerProcess], rows: int, only: list[str], p: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, dict[str, list[dict[str, float]]]] = {w: {} for w in only}
    targets = [workloads.Target(s.key, s.url, s.http, s.pid) for s in procs]
    engine = workloads.Engine(rows) if "viewport" in only else None
    try:
        for target in targets:
            log(f"setting up {target.key}: persistent clients and their views")
            await target.setup()

        async def rounds(workload: str, count: int, fn: Any) -> None:
            for n in range(count):
                # Each round starts with the next server: none always runs first, or right
                # after the same neighbour (the client's own garbage and caches carry over).
                for target in targets[n % len(targets):] + targets[: n % len(targets)]:
                    result = await fn(target)
                    raw[workload].setdefault(target.key, []).append(result)
                    log(f"{workload} round {n + 1}/{count} {target.key}: "
                        + ", ".join(f"{k}={v:.3g}" for k, v in result.items()))

        if "idle_memory" in only:
            await rounds("idle_memory", 1, lambda t: workloads.idle_memory(t, p["idle_connections"]))
        if "viewport" in only:
            assert engine is not None
            for _ in range(p["viewport"]):
                raw["viewport"].setdefault("engine", []).append(workloads.viewport_engine(engine))
            await rounds("viewport", p["viewport"], workloads.viewport)
        if "throughput" in only:
            await rounds("throughput", p["throughput"], lambda t: workloads.throughput(t, p["throughput_s"]))
        if "bulk" in only:
            await rounds("bulk", p["bulk"], workloads.bulk)
        if "head_of_line" in only:
            await rounds("head_of_line", p["head_of_line"], workloads.head_of_line)
        if "fanout" in only:
            await rounds("fanout", p["fanout"], lambda t: workloads.fanout(t, p["fanout_s"]))
    finally:
        for target in targets:
            await target.close()
    return raw


def metadata(rows: int, quick: bool, p: dict[str, Any]) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "rows": rows,
        "quick": quick,
        "plan": p,
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": commit.stdout.strip(),
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": sys.version.split()[0],
        "versions": {
            name: version(dist)
            for name, dist in [("perspective", "perspective-python"), ("daphne", "daphne"),
                               ("uvicorn", "uvicorn"), ("tornado", "tornado"),
                               ("channels", "channels"), ("django", "django"),
                               ("websockets", "websockets")]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="table rows (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds for development")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=WORKLOADS)
    parser.add_argument("--servers", nargs="+", choices=list(report.SERVERS), default=list(report.SERVERS))
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    p = plan(args.quick)
    meta = metadata(rows, args.quick, p)
    procs = [s for s in servers(rows) if s.key in args.servers]
    logs = Path(tempfile.mkdtemp(prefix="perspective-bench-"))
    migrate({"DJANGO_SQLITE_PATH": str(logs / "bench.sqlite3")}, settings="benchmarks.settings")
    try:
        for proc in procs:
            log(f"starting {proc.key} on port {proc.port} (logs in {logs})")
            proc.start(logs)
        raw = asyncio.run(measure(procs, rows, args.only, p))
    finally:
        for proc in procs:
            proc.stop()
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    # Only a full run replaces latest.*, which the README quotes; a part of one goes beside it.
    partial = args.only != WORKLOADS or args.servers != list(report.SERVERS)
    name = "latest-quick" if args.quick else "latest-partial" if partial else "latest"
    print(report.write(RESULTS, name, meta, raw))


if __name__ == "__main__":
    main()
