"""Run Perspective's own table tests (shipped in the wheel) in-process or through a server.

``python -m tests.perspective_suite [--tornado] [FILE ...]`` runs them (default: all of
``perspective/tests/table``) in-process and through our consumer under a real daphne
process (``tests/suiteapp``), optionally also through Perspective's own Tornado handler, and
prints the pass counts and the tests whose outcome differs. ``tests/test_perspective_suite.py``
runs a few files the same way in CI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import perspective

from .servers import ROOT, DaphneProcess, free_port, migrate, wait_for_port

SUITE = Path(perspective.__file__).resolve().parent / "tests" / "table"
SETTINGS = "tests.settings_suite"
APP = "tests.suiteapp.asgi:application"


def run_suite(files: list[str], junit: Path, url: str | None = None, timeout: float = 1800) -> dict[str, str]:
    """Run ``files`` of the suite in a pytest subprocess; return each test's outcome.

    With ``url``, ``tests.perspective_remote`` routes the suite's clients there.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    cmd = [
        sys.executable, "-m", "pytest", "-c", os.devnull, "--rootdir", str(SUITE),
        "-p", "no:django", "-p", "no:cacheprovider", "-p", "no:asyncio",
        "-o", "timeout=60", "-o", "timeout_method=thread", "-q", "--continue-on-collection-errors",
        "--junitxml", str(junit),
    ]
    if url:
        env["PERSPECTIVE_REMOTE_URL"] = url
        cmd += ["-p", "tests.perspective_remote"]
    cmd += [str(SUITE / name) for name in files]
    # pytest exits non-zero when a test fails: the outcomes are in the report, not the code.
    subprocess.run(
        cmd, check=False, cwd=ROOT, env=env, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return outcomes(junit)


def outcomes(junit: Path) -> dict[str, str]:
    results: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        results[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return results


def suite_server(workdir: Path) -> DaphneProcess:
    env = {"DJANGO_SQLITE_PATH": str(workdir / "suite.sqlite3")}
    migrate(env, settings=SETTINGS)
    return DaphneProcess(workdir / "daphne-suite.log", env=env, app=APP, settings=SETTINGS).start()


def summary(name: str, results: dict[str, str]) -> str:
    counts = Counter(results.values())
    return f"{name}: {counts['passed']} passed, {counts['failure'] + counts['error']} failed, {counts['skipped']} skipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*", help="test files under perspective/tests/table (default: all)")
    parser.add_argument("--tornado", action="store_true", help="also through Perspective's Tornado handler")
    args = parser.parse_args()
    files = args.files or sorted(p.name for p in SUITE.glob("test_*.py"))
    workdir = Path(tempfile.mkdtemp(prefix="perspective-suite-"))
    runs = {"in-process": run_suite(files, workdir / "local.xml")}
    server = suite_server(workdir)
    try:
        runs["consumer"] = run_suite(files, workdir / "consumer.xml", server.ws_url)
    finally:
        server.stop()
    if args.tornado:
        port = free_port()
        tornado = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.tornado_server", "--port", str(port), "--rows", "10"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, proc=tornado)
            runs["tornado"] = run_suite(files, workdir / "tornado.xml", f"ws://127.0.0.1:{port}/websocket")
        finally:
            tornado.terminate()
            tornado.wait(10)
    for name, results in runs.items():
        print(summary(name, results))
    local = runs["in-process"]
    for name, results in runs.items():
        differ = sorted(t for t in local.keys() | results.keys() if local.get(t) != results.get(t))
        for test in differ:
            print(f"  {name} differs: {test}: in-process {local.get(test)}, {name} {results.get(test)}")
    print(f"logs and reports in {workdir}")


if __name__ == "__main__":
    main()
