"""Time from opening an attribution-graph URL to the rendered graph, in a real Chromium.

    python benchmarks/graph_latency.py STORE [STORE ...] [--text TEXT] [--seed 0]
        [--max-edges 500] [--extra NAME=QUERY] [--requests 10] [--screenshots docs/figures]

Starts a local Ray and the `spd serve` application on 127.0.0.1 (one replica) with the stores
(each served under its file name), then for each one opens its graph page,
`/d/{name}/graph?...&max_edges=`, in Debian's Chromium (Playwright, /usr/bin/chromium) and times
`page.goto` until the page says the graph is drawn (`#graph[data-state=done]`: the page served,
its script loaded, the graph computed and streamed from the JSON API, laid out and drawn as SVG),
p50 and p99 over --requests opens after one warm-up (which loads the model). The input: a
language model's --text; an induction target's repeated-span sequence (random tokens, then the
same span again), drawn with --seed as the target's training data draws them; another toy's
first one-hot input. --extra NAME=QUERY adds query parameters to one store's URL (e.g. pinned
components). --screenshots writes explorer-graph-<name>.png of each. Client, proxy, replica and
browser share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

from induction_graph import repeated_span
from jsonl import emit
from serve_latency import free_port, percentiles_ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve.browser import chromium

DEFAULT_TEXT = "The whale swam to the ship, and the ship sailed on"


def graph_query(store: str, text: str, seed: int, max_edges: int) -> dict[str, str]:
    """The graph page's query for a store: its input and max_edges."""
    from spd_core.store import FactorStore

    target = FactorStore.open(store).target_spec
    spec = target.get("spec") or {}
    if target.get("kind") == "hf":
        query = {"text": text}
    elif spec.get("kind") == "induction":
        query = {"tokens": ",".join(map(str, repeated_span(spec, seed)))}
    else:  # a vector toy (tms, resid-mlp): its first one-hot input
        width = int(spec["n_features"])
        query = {"input": ",".join("1" if i == 0 else "0" for i in range(width))}
    return {**query, "max_edges": str(max_edges)}


def screenshot(browser, url: str, path: Path) -> None:
    """The whole page with the whole graph: the canvas unscrolled and the window as wide as the
    graph (a style added by the browser for the figure only, so CSP is bypassed)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    page.set_default_timeout(600_000)
    page.goto(url)
    page.wait_for_selector("#graph[data-state=done]")
    width = int(page.locator("svg.graph").get_attribute("width"))
    page.set_viewport_size({"width": max(1400, width + 60), "height": 1000})
    page.add_style_tag(content="main { max-width: none; } .graph-canvas { max-height: none; }")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    page.close()
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stores", nargs="+", help="stores, each served under its file name")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="a language model's prompt")
    parser.add_argument("--seed", type=int, default=0, help="the induction sequence's seed")
    parser.add_argument("--max-edges", type=int, default=500, help="edges the page fetches")
    parser.add_argument(
        "--extra", action="append", default=[], help="NAME=QUERY added to one store's URL"
    )
    parser.add_argument("--requests", type=int, default=10, help="timed opens per graph")
    parser.add_argument("--screenshots", type=Path, help="write explorer-graph-<name>.png here")
    args = parser.parse_args()
    extra = dict(e.split("=", 1) for e in args.extra)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from services.serving.app import set_serve_env, start

    set_serve_env()
    ray.init(include_dashboard=False, log_to_driver=False)
    port = free_port()
    names = {Path(s).name.removesuffix(".zarr"): s for s in args.stores}
    start({"stores": [f"{n}={s}" for n, s in names.items()]}, grpc_port=free_port(), http_port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            for name, store in names.items():
                query = urlencode(graph_query(store, args.text, args.seed, args.max_edges))
                url = f"{base}/d/{name}/graph?{query}" + (
                    f"&{extra[name]}" if name in extra else ""
                )
                print(url, file=sys.stderr)

                def open_graph(url: str = url) -> None:
                    page.goto(url)
                    page.wait_for_selector("#graph[data-state=done]")

                p50, p99 = percentiles_ms(open_graph, args.requests, warmup=1)
                counts = page.locator("#graph-counts")
                emit(f"graph/{name}/chromium_to_rendered/p50", p50, "ms")
                emit(f"graph/{name}/chromium_to_rendered/p99", p99, "ms")
                emit(f"graph/{name}/nodes", int(counts.get_attribute("data-nodes")), "nodes")
                emit(f"graph/{name}/edges", int(counts.get_attribute("data-edges")), "edges")
                if args.screenshots:
                    screenshot(browser, url, args.screenshots / f"explorer-graph-{name}.png")
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
