"""Harvest calls and text ComputeImportances on one `spd serve` application, alone and under
16 concurrent clients, with the harvest served the old way and the new way side by side.

    python benchmarks/serve_harvest_load.py STORE [--clients 16] [--seconds 20] [--calls 60]
        [--rounds 2]

STORE is a harvested language-model store (`spd harvest`; tiny-llama-2l for the issue's
figures). Starts a local Ray (with `spd serve`'s Serve environment) and two applications of the
same deployment on one gRPC proxy on 127.0.0.1, each one replica of 1 CPU: "before"
(`harvest_cache: false`: the harvest reopened, checked and ranked on every call, on the
replica's event loop, as before) and "after" (kept in memory until its manifest changes, harvest
calls on a thread pool). Round by round, before then after (interleaved, so that both see the
same load from whatever else shares the machine), it measures
- each call alone, one sequential client, `--calls` times: GetComponentSummary (components in
  turn), ListComponents (the first page of 50; a deep page: the last one; the first page of one
  module), GetComponentContexts (k 10), ComputeImportances of a 24-token text;
- the same calls under load, `--clients` asyncio clients (one channel each) for `--seconds`,
  each call drawn at random from summary / first page / deep page / contexts / importances:
  "paced", each client thinking a random time of mean `--think-ms` after each answer (people
  clicking through explorer pages), and "saturated", a closed loop without think time (the
  calls/s the server can answer); p50/p99 per call and the calls/s answered in all.
Printed as JSON lines, with the before/after ratios and the importances' p50 under load over
alone. Latencies pool every round; client, proxy and both replicas share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import numpy as np
from jsonl import emit

TEXT = "Once upon a time there was a little girl who lived in a village near the forest with her"
NAME = "bench"
PAGE = 50
VARIANTS = {"before": False, "after": True}  # variant -> harvest_cache
LOAD_MIX = ("summary", "list_first", "list_deep", "contexts", "importances")
PHASES = ("alone", "paced", "saturated")
Call = Callable[..., Awaitable[object]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Calls:
    """The benchmark's calls of one kind each, on one client; components taken in turn."""

    def __init__(self, client, components: list[tuple[str, int]], deep_token: str, module: str):
        self.client, self.components, self.deep_token, self.module = (
            client,
            components,
            deep_token,
            module,
        )
        self._next = random.Random(0).randrange(len(components))

    def _component(self) -> tuple[str, int]:
        self._next = (self._next + 7) % len(self.components)
        return self.components[self._next]

    def kinds(self) -> dict[str, Call]:
        c = self.client
        return {
            "summary": lambda: c.get_component_summary(NAME, *self._component()),
            "list_first": lambda: c.list_components(NAME, page_size=PAGE),
            "list_deep": lambda: c.list_components(
                NAME, page_size=PAGE, page_token=self.deep_token
            ),
            "list_module": lambda: c.list_components(NAME, module=self.module, page_size=PAGE),
            "contexts": lambda: c.get_component_contexts(NAME, *self._component(), k=10),
            "importances": lambda: c.text_importances(NAME, text=TEXT),
        }


async def alone(client, calls: Calls, n: int, out: dict[str, list[float]]) -> None:
    for kind, call in calls.kinds().items():
        for _ in range(3):
            await call()
        for _ in range(n):
            start = time.perf_counter()
            await call()
            out[kind].append(time.perf_counter() - start)


async def load(
    make_client,
    setup: tuple,
    clients: int,
    seconds: float,
    think_s: float,
    out: dict[str, list[float]],
) -> tuple[int, float]:
    """(calls answered, seconds they took) of `clients` clients, each waiting for its answer and
    then a random (exponential) think time of mean `think_s` (0: a closed loop) before its next
    call."""
    done, ready, go = 0, 0, asyncio.Event()
    began = stop = 0.0

    async def worker(seed: int) -> None:
        nonlocal done, ready, began, stop
        rng = random.Random(seed)
        async with make_client() as client:
            kinds = Calls(client, *setup).kinds()
            await kinds["list_first"]()  # every channel connected before the clock starts
            ready += 1
            if ready == clients:
                began = time.perf_counter()
                stop = began + seconds
                go.set()
            await go.wait()
            while time.perf_counter() < stop:
                kind = rng.choice(LOAD_MIX)
                start = time.perf_counter()
                await kinds[kind]()
                out[kind].append(time.perf_counter() - start)
                done += 1
                if think_s:
                    await asyncio.sleep(rng.expovariate(1 / think_s))

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return done, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", help="a harvested language-model store (tiny-llama-2l)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients under load")
    parser.add_argument("--seconds", type=float, default=20.0, help="under load, per round")
    parser.add_argument("--calls", type=int, default=60, help="calls of each kind alone, per round")
    parser.add_argument("--rounds", type=int, default=2, help="before/after rounds, interleaved")
    parser.add_argument(
        "--think-ms", type=float, default=250.0, help="mean think time per client, paced load"
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from ray import serve

    from services.serving.app import build_app, set_serve_env, start
    from spd_client import AsyncClient, Client
    from spd_core.store import FactorStore

    set_serve_env()
    store = FactorStore.open(args.store)
    components = [(m, c) for m, layout in store.modules.items() for c in range(layout.C)]
    module = next(iter(store.modules))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    base = {"stores": [f"{NAME}={args.store}"], "torch_threads": 1}
    try:
        start({**base, "harvest_cache": True}, grpc_port=port, http_port=free_port())
        serve.run(
            build_app({**base, "harvest_cache": False}),
            name="before",
            route_prefix="/before",
            blocking=False,
        )
        address = f"127.0.0.1:{port}"
        applications = {"before": "before", "after": "spd"}
        with Client(address, application="spd") as client:
            start_s = time.perf_counter()
            page = client.list_components(NAME, page_size=PAGE)
            emit("after_first_call_opens_harvest", (time.perf_counter() - start_s) * 1e3, "ms")
            token = page.next_page_token
            while True:  # the last page's token: a deep page
                nxt = client.list_components(NAME, page_size=PAGE, page_token=token)
                if not nxt.next_page_token:
                    break
                token = nxt.next_page_token
        emit("components", len(components), "")
        setup = (components, token, module)
        times = {(v, p): defaultdict(list) for v in VARIANTS for p in PHASES}
        calls_done = {(v, p): [0, 0.0] for v in VARIANTS for p in PHASES[1:]}
        think = {"paced": args.think_ms / 1e3, "saturated": 0.0}

        def make_client(variant: str):
            return lambda: AsyncClient(address, application=applications[variant], timeout=120)

        async def round_of(variant: str) -> None:
            async with make_client(variant)() as client:
                await alone(client, Calls(client, *setup), args.calls, times[variant, "alone"])
            for phase in PHASES[1:]:
                done, took = await load(
                    make_client(variant),
                    setup,
                    args.clients,
                    args.seconds,
                    think[phase],
                    times[variant, phase],
                )
                calls_done[variant, phase][0] += done
                calls_done[variant, phase][1] += took

        for _ in range(args.rounds):
            for variant in VARIANTS:
                asyncio.run(round_of(variant))
        p50: dict[tuple[str, str, str], float] = {}
        for (variant, phase), table in times.items():
            for kind, seconds in table.items():
                q50, q99 = np.percentile(seconds, [50, 99]) * 1e3
                p50[variant, phase, kind] = q50
                emit(f"{variant}_{phase}_p50_{kind}", q50, "ms")
                emit(f"{variant}_{phase}_p99_{kind}", q99, "ms")
        for (variant, phase), (done, took) in calls_done.items():
            emit(f"{variant}_{phase}_{args.clients}_clients_calls_per_s", done / took, "calls/s")
        for variant, phase, kind in p50:
            if variant == "after":
                ratio = p50["before", phase, kind] / p50["after", phase, kind]
                emit(f"{phase}_p50_{kind}_before_over_after", ratio, "x")
        for variant in VARIANTS:
            for phase in PHASES[1:]:
                ratio = p50[variant, phase, "importances"] / p50[variant, "alone", "importances"]
                emit(f"{variant}_importances_p50_{phase}_over_alone", ratio, "x")
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
