"""The sigmoids of a step with bool masks and `torch.where` against spd's 0./1. float masks,
forward + backward side by side in one run (JSON lines).

    python benchmarks/sigmoid_masks.py [--rows 1279] [--C 400] [--threads 1]

The default shape is one resid-mlp-2 step's CI tensor: 1279 active rows, C = 400 per module.
Each pair computes the same values and gradients bit for bit (checked here before timing); only
the kernels differ.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from jsonl import emit
from torch import Tensor

from spd_core.model.sigmoids import LEAK, lower_leaky_clamped, upper_leaky


class _WhereLowerLeaky(torch.autograd.Function):
    """The lower sigmoid with a bool-mask backward (how spd wrote it before)."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return z.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        inside = (z > 0) & (z <= 1)
        below_wants_up = (z <= 0) & (grad < 0)
        return torch.where(inside, grad, torch.where(below_wants_up, LEAK * grad, 0.0))


def where_upper_leaky(z: Tensor) -> Tensor:
    return torch.where(z > 1, 1 + LEAK * (z - 1), z.clamp(min=0.0))


def forward_backward(fn: Callable[..., Tensor], inputs: list[Tensor], grad: Tensor) -> list:
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    out.backward(grad)
    return [out.detach(), *(t.grad for t in inputs)]


def ms_per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1279)
    parser.add_argument("--C", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    emit("torch_threads", args.threads, "threads")
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(args.rows, args.C, generator=gen) * 2).requires_grad_()
    g = torch.randn(args.rows, args.C, generator=gen)
    cases = {
        "lower_leaky": (_WhereLowerLeaky.apply, lower_leaky_clamped, [z], g),
        "upper_leaky": (where_upper_leaky, upper_leaky, [z], g),
    }
    for name, (old, new, inputs, grad) in cases.items():
        for a, b in zip(
            forward_backward(old, inputs, grad), forward_backward(new, inputs, grad), strict=True
        ):
            if not torch.equal(a, b):
                raise SystemExit(f"{name}: the two versions differ")
        old_ms = ms_per_call(lambda: forward_backward(old, inputs, grad), args.repeats)  # noqa: B023
        new_ms = ms_per_call(lambda: forward_backward(new, inputs, grad), args.repeats)  # noqa: B023
        emit(f"{name}/bool_where_ms", old_ms, "ms")
        emit(f"{name}/float_mask_ms", new_ms, "ms")
        emit(f"{name}/speedup", old_ms / new_ms, "x")


if __name__ == "__main__":
    main()
