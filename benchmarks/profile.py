"""Where a server's CPU goes per request: ``python -m benchmarks.profile [--server daphne] [--seconds 20]``.

Starts one server of ``benchmarks.run`` (daphne by default), drives the 20-client
``throughput`` workload at it while ``py-spy`` samples the server process, and prints the
share of samples by layer (ours, channels, daphne, autobahn, twisted, asyncio, the engine)
and the functions with the most samples of their own. py-spy counts a thread inside a call
that released the GIL as busy in that call; ``--gil`` samples only the thread holding it,
and ``--perf`` records with Linux ``perf`` instead (time by thread and shared object: the
interpreter, the engine's library, libc, the kernel), from the moment the views exist. That
is how the thread hand-offs were found; the ratios themselves come from ``benchmarks.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from typing import Any
from pathlib import Path

from tests.servers import migrate

from . import workloads
from .servers import servers

LAYERS = (
    ("django_perspective/", "ours"),
    ("/channels/", "channels"),
    ("/daphne/", "daphne"),
    ("/autobahn/", "autobahn"),
    ("/txaio/", "autobahn"),
    ("/twisted/", "twisted"),
    ("/uvicorn/", "uvicorn"),
    ("/websockets/", "websockets"),
    ("/tornado/", "tornado"),
    ("/asyncio/", "asyncio"),
    ("/perspective/", "engine"),
    ("/logging/", "logging"),
    ("/asgiref/", "asgiref"),
    ("/django/", "django"),
)


def layer(frame: str) -> str:
    for needle, name in LAYERS:
        if needle in frame:
            return name
    return "other"


def summarize(raw: Path, top: int) -> str:
    """Self samples by layer (the innermost frame of ours or a library) and by function."""
    by_layer: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        n = int(count)
        total += n
        leaf = frames[-1]
        named = next((f for f in reversed(frames) if layer(f) != "other"), leaf)
        by_layer[layer(named)] += n
        by_function[leaf] += n
    out = [f"{total} samples"]
    out += [f"  {name:<11} {n / total:6.1%}" for name, n in by_layer.most_common()]
    out.append("functions with the most samples of their own:")
    out += [f"  {n / total:6.1%}  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(out)


def summarize_perf(data: Path, pid: int) -> str:
    """``perf record`` samples by thread and shared object: time outside the GIL shows too."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,ip,dso"], capture_output=True, text=True).stdout
    by_thread: Counter[int] = Counter()
    by_dso: Counter[tuple[int, str]] = Counter()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        tid, dso = int(parts[0]), Path(parts[-1].strip("()")).name
        by_thread[tid] += 1
        by_dso[(tid, dso)] += 1
    total = sum(by_thread.values()) or 1
    lines = [f"{total} samples (perf, cpu-clock)"]
    for tid, n in by_thread.most_common(4):
        lines.append(f"  thread {tid}{' (event loop)' if tid == pid else ''}: {n / total:.1%}")
        lines += [f"    {dso:<40} {m / total:6.1%}" for (t, dso), m in by_dso.most_common() if t == tid and m / total >= 0.005]
    return "\n".join(lines)


async def drive(server_url: str, http: str, pid: int, seconds: float, on_ready: Any = None) -> dict[str, float]:
    target = workloads.Target("profiled", server_url, http, pid)
    await target.setup()
    try:
        if on_ready is not None:
            on_ready()
        return await workloads.throughput(target, seconds)
    finally:
        await target.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="daphne", choices=["tornado", "daphne", "daphne-stock", "uvicorn", "uvicorn-stock"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="sample C frames too (py-spy --native)")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)")
    parser.add_argument("--perf", action="store_true", help="perf record instead: CPU by thread and shared object")
    args = parser.parse_args()
    if args.perf:
        return perf_main(args)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    return profile(
        args,
        lambda pid, out: [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--output", str(out),
                          "--duration", str(int(args.seconds)), "--nonblocking",
                          *(["--native"] if args.native else []), *(["--gil"] if args.gil else [])],
        lambda out, _pid: summarize(out, args.top),
    )


def perf_main(args: argparse.Namespace) -> int:
    """The same workload under ``perf record`` (Debian's linux-perf)."""
    if shutil.which("perf") is None:
        print("perf is not installed: apt-get install linux-perf", file=sys.stderr)
        return 2
    return profile(
        args,
        lambda pid, out: ["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(pid), "-o", str(out),
                          "--", "sleep", str(args.seconds)],
        summarize_perf,
    )


def profile(args: argparse.Namespace, recorder: Callable[[int, Path], list[str]], report: Callable[[Path, int], str]) -> int:
    """Start the server, build the clients' views, then record while the workload runs."""
    proc = next(s for s in servers(args.rows) if s.key == args.server)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        migrate({"DJANGO_SQLITE_PATH": str(log_dir / "bench.sqlite3")}, settings="benchmarks.settings")
        proc.start(log_dir)
        out = log_dir / "samples"
        recorders: list[subprocess.Popen] = []

        def record() -> None:
            recorders.append(subprocess.Popen(recorder(proc.pid, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        try:
            result = asyncio.run(drive(proc.url, proc.http, proc.pid, args.seconds, on_ready=record))
            for running in recorders:
                running.wait()
        finally:
            proc.stop()
        print(f"{args.server}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
        print(report(out, proc.pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
