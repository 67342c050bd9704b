"""Latency and throughput of ComputeImportances over gRPC (Ray Serve) next to in-process spd_core.

    python benchmarks/serve_latency.py runs/resid-mlp-1.zarr [--requests 300] [--seconds 10]
        [--direct-ingress]

Starts a local Ray (with `spd serve`'s Serve environment) and the `spd serve` application on
127.0.0.1, then measures
- p50/p99 latency of one ComputeImportances call (dense) with 1 and with 256 inputs from one
  sequential client, and of the same computation in-process (numpy in, numpy out); their ratio
  and difference (the serving overhead), with server-side batching on and off;
- requests/s from 32 concurrent asyncio clients sending 1-input requests, with batching on
  (max_batch_size 32) and off (max_batch_size 1), and their ratio;
- in-process, 32 one-input forwards against one 32-input forward (what batching can save), and
  the ratio batching could reach at most given the unbatched requests/s (each request's
  serving cost stays; only the forward's fixed cost is shared).
--direct-ingress turns on Ray Serve's direct ingress (experimental in Ray 2.60): clients call the
replica's own gRPC server instead of going through Serve's proxy.
Client, proxy and replica share this machine's CPUs; each uses one torch thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time

import numpy as np
import torch
from jsonl import emit

from spd_core.loading import load_component_model
from spd_core.queries import importances, io_signature
from spd_core.store import FactorStore

NAME = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles_ms(fn, n: int, warmup: int = 20) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    return float(p50), float(p99)


def direct_ingress_env(grpc_port: int) -> None:
    """Direct ingress for the Ray this process starts: replicas serve gRPC from `grpc_port` up,
    and a replaced replica does not hold its port through Serve's 30 s draining period."""
    os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT"] = str(grpc_port)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"] = str(grpc_port + 100)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "0"


def replica_address() -> str:
    """Direct ingress: host:port of the application's one running replica. Ray 2.60 has no
    public call for it; this reads the controller's target groups (what HAProxy is given)."""
    import ray
    from ray.serve._private.common import RequestProtocol
    from ray.serve.context import _get_global_client

    from services.serving.app import APP_NAME

    controller = _get_global_client()._controller
    for _ in range(600):
        groups = ray.get(controller.get_target_groups.remote(APP_NAME))
        targets = [t for g in groups if g.protocol == RequestProtocol.GRPC for t in g.targets]
        if len(targets) == 1:
            return f"127.0.0.1:{targets[0].port}"
        time.sleep(0.1)
    raise RuntimeError(f"expected one replica gRPC target, got {groups}")


def forward_batching(model, x: np.ndarray, n: int, clients: int) -> tuple[float, float]:
    """In-process ms of `clients` one-input forwards one by one, and of one forward of them all."""

    def separately() -> None:
        for i in range(clients):
            importances(model, torch.from_numpy(x[i : i + 1]))

    def together() -> None:
        importances(model, torch.from_numpy(x))

    return percentiles_ms(separately, n)[0], percentiles_ms(together, n)[0]


async def throughput(address: str, x: np.ndarray, clients: int, seconds: float) -> float:
    from spd_client import AsyncClient

    done = 0
    async with AsyncClient(address) as client:
        for _ in range(3):
            await client.compute_importances(NAME, x)
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await client.compute_importances(NAME, x)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="factor store (resid-mlp-1 for the issue's figures)")
    parser.add_argument("--requests", type=int, default=300, help="calls per latency figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput figure")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--direct-ingress", action="store_true", help="bypass Serve's proxy")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.direct_ingress:  # before Ray (and Serve's settings) are imported
        direct_ingress_env(free_port())
    torch.set_num_threads(1)

    import ray
    from ray import serve

    from services.serving.app import APP_NAME, build_app, set_serve_env, start
    from spd_client import Client

    set_serve_env()

    model, _ = load_component_model(args.store)
    signature = io_signature(FactorStore.open(args.store).target_spec)
    assert signature is not None, "benchmark a self-contained (toy-target) store"
    rng = np.random.default_rng(0)
    inputs = {
        n: rng.uniform(-1, 1, (n, *signature.input_shape)).astype(np.float32) for n in (1, 256)
    }
    separate_ms, together_ms = forward_batching(
        model, inputs[256][: args.clients], 50, args.clients
    )
    emit(f"in_process_{args.clients}_forwards_of_1_input", separate_ms, "ms")
    emit(f"in_process_1_forward_of_{args.clients}_inputs", together_ms, "ms")

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    app = {"stores": [f"{NAME}={args.store}"], "max_batch_size": 32, "batch_wait_timeout_s": 0.002}
    try:
        start(app, grpc_port=port, http_port=free_port())
        for batching, size in (("batched", 32), ("unbatched", 1)):
            serve.run(build_app({**app, "max_batch_size": size}), name=APP_NAME, route_prefix="/")
            address = replica_address() if args.direct_ingress else f"127.0.0.1:{port}"
            with Client(address) as client:
                for n, x in inputs.items():

                    def local(x: np.ndarray = x) -> None:
                        {m: c.numpy() for m, c in importances(model, torch.from_numpy(x)).items()}

                    def served(x: np.ndarray = x) -> None:
                        client.compute_importances(NAME, x)

                    local_p50, local_p99 = percentiles_ms(local, args.requests)
                    p50, p99 = percentiles_ms(served, args.requests)
                    tag = f"{n}_input{'s' if n > 1 else ''}_{batching}"
                    emit(f"in_process_p50_{tag}", local_p50, "ms")
                    emit(f"in_process_p99_{tag}", local_p99, "ms")
                    emit(f"grpc_p50_{tag}", p50, "ms")
                    emit(f"grpc_p99_{tag}", p99, "ms")
                    emit(f"grpc_overhead_p50_{tag}", p50 - local_p50, "ms")
                    emit(f"grpc_over_in_process_p50_{tag}", p50 / local_p50, "x")
            rate = asyncio.run(throughput(address, inputs[1], args.clients, args.seconds))
            emit(f"throughput_{args.clients}_clients_{batching}", rate, "requests/s")
            if batching == "batched":
                batched_rate = rate
        emit(f"throughput_{args.clients}_clients_batched_over_unbatched", batched_rate / rate, "x")
        # per request, unbatched: 1/rate s of serving, of which one forward's fixed cost (its
        # share of `separate_ms`, less what the inputs themselves cost) is what batching shares
        shared_ms = (separate_ms - together_ms) / args.clients
        request_ms = 1e3 / rate
        emit("throughput_unbatched_ms_per_request", request_ms, "ms")
        emit("batched_over_unbatched_bound", request_ms / (request_ms - shared_ms), "x")
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
