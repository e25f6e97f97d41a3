"""First paint of the demo page in headless Chromium, over loopback and over throttled links.

    python -m benchmarks.first_paint --runs 5

Starts the example project under daphne (its own SQLite database and STATIC_ROOT, after
``collectstatic`` unless ``--no-collectstatic``), opens ``/`` in a fresh browser context per
run (nothing cached) and reports, per network profile, the medians of: first contentful
paint, the moment each public viewer reached ``loaded`` (its first view drawn), and the
bytes the bundle took on the wire. Prints JSON; ``--out FILE`` writes it there too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from django_perspective.testing import DaphneProcess, migrate
from tests.browsing import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "example_project.settings"
VIEWERS = ("superstore-chart", "ticks-grid", "superstore-grid")
# name -> Network.emulateNetworkConditions (bytes per second, milliseconds); None: loopback.
PROFILES: dict[str, dict | None] = {
    "loopback": None,
    "50 Mbit/s, 20 ms": {"latency": 20, "downloadThroughput": 50e6 / 8, "uploadThroughput": 10e6 / 8},
    "10 Mbit/s, 40 ms": {"latency": 40, "downloadThroughput": 10e6 / 8, "uploadThroughput": 5e6 / 8},
}
# Records when each viewer first reports "loaded" (the event does not bubble: capture it).
RECORDER = """
window.__loaded = {};
document.addEventListener("django-perspective-state", (event) => {
    if (event.detail.state === "loaded" && !(event.target.id in window.__loaded)) {
        window.__loaded[event.target.id] = performance.now();
    }
}, true);
"""
MEASURE = """() => {
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    const bundle = performance.getEntriesByType("resource").find((e) => e.name.includes("perspective-anywidget.js"));
    return {
        fcp_ms: paint ? paint.startTime : null,
        loaded_ms: window.__loaded,
        bundle_transfer_bytes: bundle ? bundle.transferSize : null,
        bundle_decoded_bytes: bundle ? bundle.decodedBodySize : null,
    };
}"""
ALL_LOADED = "ids => ids.every((id) => id in window.__loaded)"


def collectstatic(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS},
        check=True,
    )


def one_run(browser, url: str, conditions: dict | None) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.add_init_script(RECORDER)
        if conditions is not None:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {"offline": False, **conditions})
        page.goto(url)
        page.wait_for_function(ALL_LOADED, arg=list(VIEWERS), timeout=180_000)
        return page.evaluate(MEASURE)
    finally:
        context.close()


def summarise(runs: list[dict]) -> dict:
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    return {
        "runs": len(runs),
        "first_contentful_paint_ms": median([r["fcp_ms"] for r in runs]),
        "viewers_loaded_ms": {v: median([r["loaded_ms"][v] for r in runs]) for v in VIEWERS},
        "all_viewers_loaded_ms": median([max(r["loaded_ms"][v] for v in VIEWERS) for r in runs]),
        "bundle_transfer_bytes": runs[0]["bundle_transfer_bytes"],
        "bundle_decoded_bytes": runs[0]["bundle_decoded_bytes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-collectstatic", action="store_true", help="serve from the finders only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DJANGO_SQLITE_PATH": f"{tmp}/db.sqlite3", "DJANGO_STATIC_ROOT": f"{tmp}/static"}
        migrate(env, settings=SETTINGS, cwd=ROOT)
        if not args.no_collectstatic:
            collectstatic(env)
        with DaphneProcess(Path(tmp) / "daphne.log", env=env, settings=SETTINGS, cwd=ROOT) as server:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                url = server.http_url + "/"
                one_run(browser, url, None)  # the engine's start is not the page's
                result = {
                    name: summarise([one_run(browser, url, conditions) for _ in range(args.runs)])
                    for name, conditions in PROFILES.items()
                }
                browser.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
