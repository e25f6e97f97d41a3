"""Soak: the demo under many clients and streaming updates, for minutes or hours.

    python -m benchmarks.soak --seconds 60 --clients 50

Reports request throughput and latency, update delivery latency, lost updates (must be 0)
and the server's RSS over time (soak.json and soak.png in a temporary directory, or in
``--out DIR``: ``make soak`` refreshes benchmarks/results/). Exits 1 when an update was
lost or the server died.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from django_perspective.client import connect
from tests.servers import DaphneProcess, migrate

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Client:
    def __init__(self) -> None:
        self.seqs: set[int] = set()
        self.delivery_ms: list[float] = []
        self.request_ms: list[float] = []
        self.errors = 0

    def on_update(self, port_id: int, delta: bytes | None = None) -> None:
        now = time.time()
        if not delta:
            return
        batch = pa.ipc.open_stream(delta).read_all()
        if "seq" not in batch.column_names:
            return
        self.seqs.update(batch.column("seq").to_pylist())
        self.delivery_ms.extend((now - sent) * 1000 for sent in set(batch.column("sent").to_pylist()))

    def lost(self) -> int:
        if not self.seqs:
            return 0
        return (max(self.seqs) - min(self.seqs) + 1) - len(self.seqs)

    async def run(self, url: str, stop: float, rate: float) -> None:
        async with connect(url) as conn:
            soak = await conn.client.open_table("soak")
            view = await soak.view()
            await view.on_update(self.on_update, mode="row")
            store = await conn.client.open_table("superstore")
            grouped = await store.view(group_by=["Region", "Category"], columns=["Sales", "Profit"])
            rows = await grouped.num_rows()
            i = 0
            while time.monotonic() < stop:
                start = (i * 7) % max(rows - 10, 1)
                t0 = time.perf_counter()
                try:
                    await grouped.to_columns_string(start_row=start, end_row=start + 10)
                    self.request_ms.append((time.perf_counter() - t0) * 1000)
                except Exception:
                    self.errors += 1
                i += 1
                await asyncio.sleep(1 / rate)
            await asyncio.sleep(1.0)  # let the last updates land


async def soak(seconds: float, clients: int, rate: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DJANGO_SQLITE_PATH": f"{tmp}/soak.sqlite3"}
        migrate(env, settings="benchmarks.soak_settings")
        server = DaphneProcess(Path(tmp) / "daphne.log", env=env, settings="benchmarks.soak_settings").start()
        try:
            rss: list[tuple[float, float]] = []
            began = time.monotonic()
            stop = began + seconds
            sampler_done = asyncio.Event()

            async def sample() -> None:
                while not sampler_done.is_set():
                    rss.append((time.monotonic() - began, rss_mib(server.proc.pid)))
                    await asyncio.sleep(1)

            sampler = asyncio.create_task(sample())
            pool = [Client() for _ in range(clients)]
            await asyncio.gather(*(c.run(server.ws_url, stop, rate) for c in pool))
            sampler_done.set()
            await sampler
            alive = server.proc.poll() is None
        finally:
            server.stop()
    requests = [ms for c in pool for ms in c.request_ms]
    delivery = [ms for c in pool for ms in c.delivery_ms]
    return {
        "seconds": seconds,
        "clients": clients,
        "server_alive": alive,
        "requests": len(requests),
        "requests_per_second": len(requests) / seconds,
        "request_p50_ms": statistics.median(requests) if requests else None,
        "request_p99_ms": percentile(requests, 0.99),
        "request_errors": sum(c.errors for c in pool),
        "updates_received": sum(len(c.seqs) for c in pool),
        "lost_updates": sum(c.lost() for c in pool),
        "delivery_p50_ms": statistics.median(delivery) if delivery else None,
        "delivery_p99_ms": percentile(delivery, 0.99),
        "rss_mib": rss,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = zip(*result["rss_mib"]) if result["rss_mib"] else ((), ())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(xs, ys)
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title(f"soak: {result['clients']} clients, {result['requests_per_second']:.0f} req/s, "
                 f"{result['lost_updates']} lost updates")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5, help="viewport requests per second per client")
    parser.add_argument("--out", type=Path, help=f"directory for soak.json and soak.png (e.g. {RESULTS})")
    args = parser.parse_args()
    result = asyncio.run(soak(args.seconds, args.clients, args.rate))
    out = args.out or Path(tempfile.mkdtemp(prefix="soak-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "soak.png")
    print(f"wrote {out / 'soak.json'} and {out / 'soak.png'}")
    summary = {k: v for k, v in result.items() if k != "rss_mib"}
    summary["rss_start_mib"] = result["rss_mib"][0][1] if result["rss_mib"] else None
    summary["rss_end_mib"] = result["rss_mib"][-1][1] if result["rss_mib"] else None
    print(json.dumps(summary, indent=2))
    ok = result["server_alive"] and result["lost_updates"] == 0 and result["updates_received"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
