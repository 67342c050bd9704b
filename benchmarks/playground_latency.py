"""Time from pressing *ablate* in the prompt playground to the answer on the page, in a real
Chromium; and the playground's screenshots.

    python benchmarks/playground_latency.py runs/tiny-llama-2l.zarr [--toy runs/induction-2l.zarr]
        [--presses 20] [--screenshots docs/figures]
    python benchmarks/playground_latency.py --url http://127.0.0.1:8000 --name tiny-llama-2l ...

Starts a local Ray and the `spd serve` application on 127.0.0.1 (one replica), or uses a running
server (`--url`, without a token). Opens the playground on a prompt with one token chosen, ticks
the first two listed components (the first module's most important), then presses *ablate*
--presses times, ticking the third listed component in and out between presses so that each
press asks for a new answer (and the page also shows the one before): the time is from the click
until the new page's answer is there (the navigation's load event and `#answer[data-mode=ablate]`),
p50 and p99; and the server's part alone, one HTTP GET of the same URL. --screenshots writes the
playground on the language model (after the presses) and, with --toy, on a toy (its first preset,
the first two listed components ablated). Client, proxy, replica and browser share this machine's
CPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
from jsonl import emit
from serve_latency import free_port, percentiles_ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve.browser import chromium

PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play"
CHOSEN = 3
"""The chosen token's position."""


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200, url
        return response.read()


def listed_boxes(page) -> list:
    """The checkboxes of the listed components: module by module, most important first."""
    return page.locator(".module-list input[name=c]").all()


def ablate_presses(page, url: str, presses: int) -> list[float]:
    """Seconds from each click on *ablate* to the answer on the new page."""
    page.goto(url, wait_until="load")
    boxes = listed_boxes(page)
    for box in boxes[:2]:
        box.check()
    times = []
    for i in range(presses + 2):  # the first two warm up
        toggle = listed_boxes(page)[2]
        toggle.set_checked(i % 2 == 0)
        start = time.perf_counter()
        with page.expect_navigation(wait_until="load"):
            page.click("#ablate-button")
        page.wait_for_selector("#answer[data-mode='ablate']")
        times.append(time.perf_counter() - start)
    return times[2:]


def toy_screenshot(page, base: str, name: str, path: Path) -> None:
    page.goto(f"{base}/d/{name}/prompt", wait_until="load")
    page.locator("a.preset").first.click()
    page.wait_for_selector("#answer")
    for box in listed_boxes(page)[:2]:
        box.check()
    with page.expect_navigation(wait_until="load"):
        page.click("#ablate-button")
    page.wait_for_selector("#answer[data-mode='ablate']")
    page.screenshot(path=str(path), full_page=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", nargs="?", help="a language-model store (not with --url)")
    parser.add_argument("--toy", help="a toy store, for its screenshot (not with --url)")
    parser.add_argument("--url", help="a running server's base URL instead of starting one")
    parser.add_argument("--name", help="the language model's served name (with --url)")
    parser.add_argument("--toy-name", help="the toy's served name (with --url)")
    parser.add_argument("--presses", type=int, default=20, help="timed presses of ablate")
    parser.add_argument("--screenshots", type=Path, help="write the playground's PNGs here")
    args = parser.parse_args()
    if bool(args.url) == bool(args.store) or bool(args.url) != bool(args.name):
        parser.error("give a store to serve, or --url and --name of a running server")

    started = False
    if args.url:
        base, name, toy = args.url.rstrip("/"), args.name, args.toy_name
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        from services.serving.app import set_serve_env, start
        from services.serving.catalog import name_stores

        set_serve_env()
        ray.init(include_dashboard=False, log_to_driver=False)
        port = free_port()
        (name,) = name_stores([args.store])  # named as spd serve names them
        toy = next(iter(name_stores([args.toy]))) if args.toy else None
        stores = [args.store] + ([args.toy] if args.toy else [])
        start({"stores": stores}, grpc_port=free_port(), http_port=port)
        base, started = f"http://127.0.0.1:{port}", True
    try:
        url = f"{base}/d/{name}/prompt?text={quote(PROMPT)}&pos={CHOSEN}"
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            times = ablate_presses(page, url, args.presses)
            p50, p99 = np.percentile(times, [50, 99]) * 1e3
            emit("playground/chromium/ablate_to_answer/p50", float(p50), "ms")
            emit("playground/chromium/ablate_to_answer/p99", float(p99), "ms")
            answered = page.url
            p50, p99 = percentiles_ms(lambda: fetch(answered), args.presses, warmup=2)
            emit("playground/server/ablate_page/p50", p50, "ms")
            emit("playground/server/ablate_page/p99", p99, "ms")
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                path = args.screenshots / f"explorer-playground-{name}.png"
                page.screenshot(path=str(path), full_page=False)
                print(f"wrote {path}", file=sys.stderr)
                if toy:
                    path = args.screenshots / f"explorer-playground-{toy}.png"
                    toy_screenshot(page, base, toy, path)
                    print(f"wrote {path}", file=sys.stderr)
    finally:
        if started:
            from ray import serve

            serve.shutdown()
            ray.shutdown()


if __name__ == "__main__":
    main()
