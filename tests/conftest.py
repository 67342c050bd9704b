"""Shared test setup: one torch thread, Ray environment defaults, small models."""

import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
torch.set_num_threads(1)


class TwoLayer(torch.nn.Module):
    """x → ReLU(fc1 x + b1) → fc2, small enough to check by hand."""

    def __init__(self, d_in: int = 3, d_hidden: int = 4, d_out: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = torch.nn.Linear(d_in, d_hidden)
        self.fc2 = torch.nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def two_layer() -> TwoLayer:
    return TwoLayer()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (Train and Serve tests share it).

    Logical CPUs exceed the machine's cores so that two Train workers, their controller and Serve
    replicas can all be scheduled at once; the work itself is tiny.
    """
    import ray

    from services.serving.app import set_serve_env

    set_serve_env()  # Serve runs as `spd serve` runs it
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 from its PyPI package (installed by .ci/run)."""
    from spd_core.hf.loading import load_hf_target

    return load_hf_target("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from its packaged GGUF (converted once into the spd cache)."""
    from spd_core.hf.loading import load_hf_target

    return load_hf_target("smollm2-135m")
