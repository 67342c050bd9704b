"""Positions with an all-zero module input share one CI evaluation: same values and gradients."""

import pytest
import torch

import spd_core.model.component_model as cm
from spd_core.config import ModulePattern
from spd_core.model.component_model import ComponentModel


@pytest.mark.parametrize("fn_type", ["mlp", "vector_mlp", "shared_mlp"])
def test_skipping_zero_inputs_changes_nothing(fn_type, monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    patterns = [ModulePattern(module_pattern=p, C=5) for p in ("0", "2")]
    model = ComponentModel(net, patterns, fn_type, [4])
    x = torch.rand(64, 6) * (torch.rand(64, 6) < 0.05)  # mostly all-zero rows

    def ci_loss_and_grads():
        ci = model.causal_importances(model.prepare(x))
        loss = sum((g**2).sum() for g in ci.upper.values()) + sum(
            g.sum() for g in ci.lower.values()
        )
        return loss, torch.autograd.grad(
            loss, model.component_parameters() + model.ci_parameters(), allow_unused=True
        )

    loss_skip, grads_skip = ci_loss_and_grads()
    monkeypatch.setattr(cm, "_skipping_zero_inputs", lambda fn, inp, clean, name: fn(inp))
    loss_full, grads_full = ci_loss_and_grads()
    torch.testing.assert_close(loss_skip, loss_full)
    for a, b in zip(grads_skip, grads_full, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
