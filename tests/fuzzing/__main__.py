"""Run the structured fuzzer by hand, for long, where a crash may kill the process.

    python -m tests.fuzzing run --frames 1000000 --out /tmp/fuzz [--coverage] [--seed 0]
    python -m tests.fuzzing replay /tmp/fuzz/crash-1        # the crash's journal, again
    python -m tests.fuzzing minimize /tmp/fuzz/crash-1      # the fewest frames that still crash
    python -m tests.fuzzing atheris /tmp/fuzz-a -- -max_total_time=600   # coverage-guided

``run`` starts a child that draws examples (one connection's frames each) and sends them
through the guard and a real engine in-process (``harness.Direct``). The child writes each
frame to a journal before sending it; when the child dies (a signal: Perspective crashed),
freezes (no example finishes within ``--freeze`` seconds) or fails a check, the parent
keeps the journal as ``crash-N/`` and starts a new child with a new seed until the budget
of frames is spent. With ``--coverage`` the children measure schema.py, guard.py and
catalog.py and the parent reports the combined coverage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ["*/django_perspective/schema.py", "*/django_perspective/guard.py", "*/django_perspective/catalog.py"]
ROUND = 400  # examples per hypothesis run; each run starts a fresh example tree


def _django(out: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["DJANGO_SQLITE_PATH"] = str(out / "fuzz.sqlite3")
    import django
    from django.conf import settings

    django.setup()
    from tests.fuzzing.harness import SETTINGS

    settings.PERSPECTIVE = SETTINGS


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def child(args: argparse.Namespace) -> int:
    """Draw and send examples until ``--frames`` frames are sent; report progress as JSON."""
    import faulthandler

    out = Path(args.out)
    cov = None
    if args.coverage:
        import coverage

        cov = coverage.Coverage(data_file=str(out / ".coverage"), data_suffix=True, include=MEASURED)
        cov.start()
    faulthandler.enable()
    _django(out)
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from tests.fuzzing.frames import FrameStrategies, examples
    from tests.fuzzing.harness import Direct
    from tests.fuzzing.journal import Journal

    harness = Direct(Journal(str(out)))
    strategies = FrameStrategies(harness.world)
    progress = out / f"progress-{os.getpid()}.json"
    started = time.monotonic()

    @settings(
        max_examples=ROUND, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
    )
    @given(examples(strategies, args.max_frames))
    def one(example: tuple[bool, list[bytes]]) -> None:
        faulthandler.dump_traceback_later(args.freeze, exit=True)  # a frozen engine ends the child
        harness.run(example[1], example[0])

    number = 0
    while harness.counts["frames"] < args.frames:
        seed(args.seed * 100_000 + number)(one)()
        number += 1
        if cov is not None and number % 10 == 0:
            cov.stop()
            cov.save()
            cov.start()
        report = {**harness.counts, "examples": harness.journal.count, "seconds": time.monotonic() - started}
        progress.write_text(json.dumps(report))
    faulthandler.cancel_dump_traceback_later()
    if cov is not None:
        cov.stop()
        cov.save()
    harness.engine.shutdown()
    return 0


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env={**_child_env(), "DJANGO_SETTINGS_MODULE": "tests.settings", "DJANGO_SQLITE_PATH": str(out / "fuzz.sqlite3")},
        check=True,
        cwd=ROOT,
    )
    totals: dict[str, float] = {}
    crashes: list[dict[str, Any]] = []
    started = time.monotonic()
    seed = args.seed
    while totals.get("frames", 0) < args.frames and len(crashes) < args.max_crashes:
        left = int(args.frames - totals.get("frames", 0))
        command = [sys.executable, "-m", "tests.fuzzing", "child", "--out", str(out), "--frames", str(left),
                   "--seed", str(seed), "--max-frames", str(args.max_frames), "--freeze", str(args.freeze)]
        if args.coverage:
            command.append("--coverage")
        with open(out / "child.log", "wb") as log:
            proc = subprocess.Popen(command, env=_child_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            rc = proc.wait()
        done = _progress(out / f"progress-{proc.pid}.json")
        for key, value in done.items():
            totals[key] = totals.get(key, 0) + value
        if rc != 0:
            crashes.append(_keep_crash(out, len(crashes) + 1, rc))
            print(f"crash {len(crashes)}: exit {rc}, kept in {crashes[-1]['path']}", flush=True)
        seed += 1
    totals["seconds"] = time.monotonic() - started
    summary = {"totals": totals, "crashes": crashes}
    if args.coverage:
        summary["coverage"] = _coverage(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    brief = {key: value for key, value in totals.items() if " " not in key}  # per-kind counts: summary.json
    print(json.dumps({**summary, "totals": brief, "coverage": summary.get("coverage", {}).get("percent")}, indent=2))
    return 1 if crashes else 0


def _progress(path: Path) -> dict[str, float]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    finally:
        path.unlink(missing_ok=True)


def _keep_crash(out: Path, number: int, rc: int) -> dict[str, Any]:
    """Move the journal and the child's output into ``crash-N/``."""
    from tests.fuzzing.journal import Journal

    where = out / f"crash-{number}"
    where.mkdir(exist_ok=True)
    for path in Journal(str(out)).paths():
        if os.path.exists(path):
            shutil.move(path, where / os.path.basename(path))
    shutil.copy(out / "child.log", where / "child.log")
    tail = (where / "child.log").read_text(errors="replace").splitlines()[-40:]
    kind = "signal" if rc < 0 else "freeze" if any("Timeout (" in line for line in tail) else "check failed"
    return {"path": str(where), "exit": rc, "kind": kind, "tail": tail[-12:]}


def _coverage(out: Path) -> dict[str, Any]:
    import coverage

    cov = coverage.Coverage(data_file=str(out / ".coverage"), include=MEASURED)
    cov.combine([str(out)], keep=True)
    cov.save()
    with open(out / "coverage.txt", "w") as report:
        total = cov.report(file=report, show_missing=True)
    return {"percent": round(total, 1), "report": (out / "coverage.txt").read_text().splitlines()}


def _examples_of(path: Path) -> list[tuple[bool, list[bytes]]]:
    from tests.fuzzing.journal import read_journal

    files = [path] if path.is_file() else sorted(path.glob("journal-*.txt")) + sorted(path.glob("minimal.txt"))
    if path.is_dir() and (path / "minimal.txt").exists():
        files = [path / "minimal.txt"]
    return read_journal(str(f) for f in files)


def replay(args: argparse.Namespace) -> int:
    """Send a journal's examples again, in order, on a fresh engine; exit 0 if all pass."""
    import faulthandler

    out = Path(args.scratch)
    out.mkdir(parents=True, exist_ok=True)
    faulthandler.enable()
    _django(out)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tests.fuzzing.harness import Direct

    harness = Direct()
    faulthandler.dump_traceback_later(args.freeze, exit=True)
    for client_tables, frames in _examples_of(Path(args.journal)):
        harness.run(frames, client_tables)
    faulthandler.cancel_dump_traceback_later()
    harness.engine.shutdown()
    print("replayed without a crash:", dict(harness.counts))
    return 0


def _write_journal(path: Path, examples: list[tuple[bool, list[bytes]]]) -> None:
    with open(path, "w") as journal:
        for number, (client_tables, frames) in enumerate(examples, 1):
            journal.write(f"E {number} {int(client_tables)}\n")
            journal.writelines(f"F {frame.hex()}\n" for frame in frames)


def minimize(args: argparse.Namespace) -> int:
    """Fewest examples, then fewest frames, whose replay still fails; kept as minimal.txt."""
    source = Path(args.journal)
    examples = _examples_of(source)
    trial_path = Path(args.scratch) / "trial.txt"
    trial_path.parent.mkdir(parents=True, exist_ok=True)

    def fails(candidate: list[tuple[bool, list[bytes]]]) -> bool:
        _write_journal(trial_path, candidate)
        command = [sys.executable, "-m", "tests.fuzzing", "replay", str(trial_path), "--scratch", args.scratch, "--freeze", str(args.freeze)]
        try:
            result = subprocess.run(command, env=_child_env(), cwd=ROOT, capture_output=True, timeout=args.freeze + 60, check=False)
        except subprocess.TimeoutExpired:
            return True
        return result.returncode != 0

    if not fails(examples):
        print("the journal replays without a crash: not reproducible this way")
        return 1
    # Drop whole examples from the front (state built by earlier ones), then one by one.
    examples = _ddmin(examples, lambda part: fails(part))
    flat = [(number, flag, frame) for number, (flag, frames) in enumerate(examples) for frame in frames]
    minimal = _regroup(_ddmin(flat, lambda part: fails(_regroup(part))))
    target = (source if source.is_dir() else source.parent) / "minimal.txt"
    _write_journal(target, minimal)
    from django_perspective import schema
    from django_perspective.protocol import ProtocolError

    for client_tables, frames in minimal:
        print(f"connection (client_tables={client_tables}):")
        for frame in frames:
            try:
                described = schema.decode(frame)
                text = f"{described.kind.name} entity={described.entity_id!r} body={described.body}"
            except ProtocolError as exc:  # a frame the schema refuses: show why
                text = f"refused: {exc}"
            print(f"  {frame.hex()}\n    {text}")
    print("kept in", target)
    return 0


def _regroup(flat: list[tuple[int, bool, bytes]]) -> list[tuple[bool, list[bytes]]]:
    """Frames tagged with their example's number back into one connection per example."""
    grouped: dict[int, tuple[bool, list[bytes]]] = {}
    for number, flag, frame in flat:
        grouped.setdefault(number, (flag, []))[1].append(frame)
    return [grouped[number] for number in sorted(grouped)]


def _ddmin(items: list[Any], fails: Any) -> list[Any]:
    """Zeller's delta debugging: a 1-minimal sublist of ``items`` on which ``fails`` holds."""
    chunks = 2
    while len(items) >= 2:
        size = max(len(items) // chunks, 1)
        parts = [items[i : i + size] for i in range(0, len(items), size)]
        for index in range(len(parts)):
            rest = [item for j, part in enumerate(parts) if j != index for item in part]
            if rest and fails(rest):
                items, chunks = rest, max(chunks - 1, 2)
                break
        else:
            if chunks >= len(items):
                break
            chunks = min(chunks * 2, len(items))
    return items


def fuzz_atheris(args: argparse.Namespace) -> int:
    """Coverage-guided: libFuzzer mutates the bytes hypothesis draws its choices from."""
    import atheris

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atheris.instrument_imports(include=["django_perspective.schema", "django_perspective.guard", "django_perspective.catalog", "django_perspective.expressions"]):
        _django(out)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from tests.fuzzing.harness import Direct
    from hypothesis import HealthCheck, given, settings

    from tests.fuzzing.frames import FrameStrategies, examples
    from tests.fuzzing.journal import Journal

    harness = Direct(Journal(str(out)))
    strategies = FrameStrategies(harness.world)

    progress = out / "progress.json"
    started = time.monotonic()

    @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(examples(strategies, args.max_frames))
    def one(example: tuple[bool, list[bytes]]) -> None:
        harness.run(example[1], example[0])
        if harness.journal.count % 200 == 0:
            brief = {k: v for k, v in harness.counts.items() if " " not in k}
            progress.write_text(json.dumps({**brief, "examples": harness.journal.count, "seconds": time.monotonic() - started}))

    corpus = out / "corpus"
    corpus.mkdir(exist_ok=True)
    # Hypothesis reads its choices from the input: short inputs draw nothing, so start long.
    options = ["-len_control=0", "-max_len=8192", f"-artifact_prefix={out}/", *args.libfuzzer, str(corpus)]
    atheris.Setup([sys.argv[0], *options], one.hypothesis.fuzz_one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzzing", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "child"):
        sub = commands.add_parser(name)
        sub.add_argument("--out", required=True)
        sub.add_argument("--frames", type=int, default=1_000_000)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--max-frames", type=int, default=20, help="frames per example after its make_views")
        sub.add_argument("--freeze", type=int, default=120, help="seconds one example may take")
        sub.add_argument("--coverage", action="store_true")
        sub.add_argument("--max-crashes", type=int, default=10)
    for name in ("replay", "minimize"):
        sub = commands.add_parser(name)
        sub.add_argument("journal")
        sub.add_argument("--scratch", default="/tmp/fuzz-replay")
        sub.add_argument("--freeze", type=int, default=120)
    sub = commands.add_parser("atheris")
    sub.add_argument("out")
    sub.add_argument("--max-frames", type=int, default=20)
    sub.add_argument("libfuzzer", nargs="*")
    args = parser.parse_args(argv)
    return {"run": run, "child": child, "replay": replay, "minimize": minimize, "atheris": fuzz_atheris}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
