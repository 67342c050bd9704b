"""Time of the explorer's pages: on the server, and to a rendered page in a real Chromium.

    python benchmarks/explorer_latency.py runs/tiny-llama-2l.zarr [--toy runs/tms-5-2.zarr]
        [--requests 30] [--screenshots docs/figures]

Starts a local Ray and the `spd serve` application on 127.0.0.1 (one replica), then for the
home page, the component table's first page, a deep page (the last), and a component page (the
most frequent component) measures
- server time: one HTTP GET of the page from one sequential client (the whole response read),
  p50 and p99 over --requests calls after a warm-up;
- time to a rendered page in Debian's Chromium (Playwright, /usr/bin/chromium): `page.goto`
  until the load event (scripts, styles and inline SVG plots done), p50 and p99.
and, to show the table's time is flat in the number of components, its first page filtered to
one module next to the whole table. --screenshots writes one PNG per view (and the toy store's
component page with --toy) for docs/explorer.md. Client, proxy, replica and browser share this
machine's CPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path

from jsonl import emit
from serve_latency import free_port, percentiles_ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve.browser import chromium

NAME = "bench"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200, url
        return response.read()


def views(base: str, name: str) -> dict[str, str]:
    """{view: URL} of the timed pages (the deep page is the table's last)."""
    import re

    table = fetch(f"{base}/d/{name}/components").decode()
    pages = int(re.search(r"page 1 of (\d+)", table).group(1))
    first = re.search(r'class="component-link" href="([^"]+)"', table).group(1)
    module = re.search(r"<code>([^<]+)</code>", table.split('id="components"')[1]).group(1)
    return {
        "home": f"{base}/",
        "decomposition": f"{base}/d/{name}",
        "table_first_page": f"{base}/d/{name}/components",
        "table_deep_page": f"{base}/d/{name}/components?page={pages}",
        "table_one_module": f"{base}/d/{name}/components?module={module}",
        "component": base + first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="a harvested language-model store")
    parser.add_argument("--toy", help="a harvested toy store, for its component page's screenshot")
    parser.add_argument("--requests", type=int, default=30, help="timed calls per view")
    parser.add_argument("--screenshots", type=Path, help="write a PNG of each view here")
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from services.serving.app import set_serve_env, start

    set_serve_env()
    ray.init(include_dashboard=False, log_to_driver=False)
    port = free_port()
    stores = [f"{NAME}={args.store}"] + ([f"toy={args.toy}"] if args.toy else [])
    start({"stores": stores}, grpc_port=free_port(), http_port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        urls = views(base, NAME)
        for view, url in urls.items():
            p50, p99 = percentiles_ms(lambda url=url: fetch(url), args.requests, warmup=3)
            emit(f"explorer/server/{view}/p50", p50, "ms")
            emit(f"explorer/server/{view}/p99", p99, "ms")
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for view, url in urls.items():
                p50, p99 = percentiles_ms(
                    lambda url=url: page.goto(url, wait_until="load"), args.requests, warmup=3
                )
                emit(f"explorer/chromium/{view}/p50", p50, "ms")
                emit(f"explorer/chromium/{view}/p99", p99, "ms")
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                shots = dict(urls)
                if args.toy:  # its most frequent component (harvest it first)
                    shots["toy_component"] = views(base, "toy")["component"]
                for view, url in shots.items():
                    page.goto(url, wait_until="load")
                    path = args.screenshots / f"explorer-{view}.png"
                    page.screenshot(path=str(path), full_page=False)
                    print(f"wrote {path}", file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
