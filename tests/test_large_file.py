"""A ~200 MB CSV streams through FileSource.load in bounded memory (measured in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .servers import ROOT

TARGET_BYTES = 200 * 1024 * 1024

MEASURE = r"""
import json
import django
django.setup()
from django_perspective.models import PublishedTable
from django_perspective.sources import FileSource

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

def load(name):
    obj = PublishedTable(name="t", source="file")
    obj.file.name = name
    return FileSource().load(obj)[0].payload

load("small.csv")  # pyarrow's pools and threads exist before the baseline
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
data = load("big.csv")
print(json.dumps({"arrow": len(data), "growth": status("VmHWM") - before}))
"""


def write_csv(path, target: int) -> int:
    """About ``target`` bytes of varied rows, written a block at a time; returns the row count."""
    block_rows = 20_000
    rows = 0
    with open(path, "w") as fh:
        fh.write("id,region,product,quantity,price,day\n")
        while fh.tell() < target:
            lines = [
                f"{i},{('North', 'South', 'East', 'West')[i % 4]},item-{i % 997},{i % 50},{(i % 10_000) / 7:.4f},2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}\n"
                for i in range(rows, rows + block_rows)
            ]
            fh.write("".join(lines))
            rows += block_rows
    return rows


def test_a_200_mb_csv_loads_in_about_its_arrow_size(tmp_path):
    started = time.monotonic()
    media = tmp_path / "media"
    media.mkdir()
    (media / "small.csv").write_text("id,region\n1,North\n")
    write_csv(media / "big.csv", TARGET_BYTES)
    size = (media / "big.csv").stat().st_size
    assert size >= TARGET_BYTES
    result = subprocess.run(
        [sys.executable, "-c", MEASURE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DJANGO_MEDIA_ROOT": str(media), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    arrow, growth = measured["arrow"], measured["growth"]
    print(f"csv {size / 2**20:.0f} MiB, arrow {arrow / 2**20:.0f} MiB, peak RSS growth {growth / 2**20:.0f} MiB, {time.monotonic() - started:.1f} s")
    assert arrow > 100 * 1024 * 1024  # the whole file was read
    assert growth < 1.5 * arrow  # the Arrow result and one block in flight, never a Python object per cell
    assert time.monotonic() - started < 60
