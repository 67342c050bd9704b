"""Joining Ray for `spd decompose` and `spd serve`: a new local instance by default, or a
running cluster by address."""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlsplit

import ray


class ClusterError(RuntimeError):
    """Ray cannot be reached or cannot run the job as asked."""


def connect(address: str | None, num_cpus: int | None = None, verbose: bool = False) -> bool:
    """Connect to the cluster at `address` (or $RAY_ADDRESS), else start a local Ray.

    Returns True when this call started Ray (the caller shuts it down). An explicit address is
    probed first, because `ray.init` waits minutes on an address where nothing listens.
    Worker logs reach this process only when `verbose`.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and address != "auto":
        check_reachable(address)
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(
                address="local",  # a new instance, never a `ray start` cluster found on disk
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=verbose,
                logging_level=logging.INFO if verbose else logging.WARNING,
            )
            return True
        ray.init(
            address=address,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
    except ConnectionError as err:
        raise ClusterError(f"cannot connect to Ray at {address}: {err}") from None
    return False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast unless something accepts TCP connections at `address` (host:port or ray://…)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ClusterError(f"Ray address {address!r} is not host:port (or ray://host:port)")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise ClusterError(
            f"nothing answers at Ray address {address} ({err}); start a cluster there with "
            "`ray start --head`, or leave out --address to run on an embedded local Ray"
        ) from None


def check_capacity(workers: int, cpus_per_worker: float, use_gpu: bool) -> None:
    """Refuse a job the cluster can never schedule (Ray would otherwise wait forever)."""
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 0.0)
    if workers * cpus_per_worker > cpus:
        raise ClusterError(
            f"{workers} workers × {cpus_per_worker:g} CPU need {workers * cpus_per_worker:g} CPUs "
            f"but the Ray cluster has {cpus:g}; use --workers {max(1, int(cpus // cpus_per_worker))} "
            "or fewer, lower --cpus-per-worker, or add nodes"
        )
    gpus = resources.get("GPU", 0.0)
    if use_gpu and workers > gpus:
        raise ClusterError(f"{workers} GPU workers need {workers} GPUs; the cluster has {gpus:g}")
