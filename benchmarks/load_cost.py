"""What checking a load costs: ``data.encode`` on Arrow and on Python rows, median of 5 runs.

    python -m benchmarks.load_cost

Arrow: 2,000,000 rows of int64, string, float64 and date32 as IPC bytes (already in loadable
types: read, validated in full, written again), and the same table with a dictionary and a
float32 column (rewritten). Rows: 200,000 records of four scalars, against the plain
``json.dumps`` encoding did before nested cells were looked for. Prints; writes nothing.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable

import pyarrow as pa

from django_perspective.data import _default, encode

ROWS = 2_000_000


def median_ms(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    table = pa.table(
        {
            "id": pa.array(range(ROWS)),
            "item": pa.array([f"item-{i % 997}" for i in range(ROWS)]),
            "price": pa.array([i / 7 for i in range(ROWS)]),
            "day": pa.array(range(ROWS), pa.int32()).cast(pa.date32()),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    rewritten = table.set_column(1, "item", table["item"].dictionary_encode()).set_column(
        2, "price", table["price"].cast(pa.float32())
    )
    validate = median_ms(lambda: [batch.validate(full=True) for batch in pa.ipc.open_stream(data)])
    print(f"Arrow IPC, {ROWS:,} rows, {len(data) / 2**20:.0f} MiB:")
    print(f"  encode(bytes), types kept:      {median_ms(lambda: encode(data)):7.0f} ms (full validation {validate:.0f} ms)")
    print(f"  encode(table), dict + float32:  {median_ms(lambda: encode(rewritten)):7.0f} ms")
    records = [{"id": i, "name": f"n{i}", "amount": i / 3, "flag": i % 2 == 0} for i in range(200_000)]
    print("200,000 records:")
    print(f"  encode(records):                {median_ms(lambda: encode(records)):7.0f} ms")
    print(f"  json.dumps alone:               {median_ms(lambda: json.dumps(records, default=_default)):7.0f} ms")


if __name__ == "__main__":
    main()
