"""Deterministic training of the toy targets from `spec.seed` (spec §7.2 / §7.3).

One `torch.Generator` seeded by the seed draws everything (initialisation, embedding, batches), in
a fixed order, so the same spec gives bit-identical weights on CPU (at a fixed thread count).
"""

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spd_core.targets.resid_mlp import ResidualMLP, random_unit_embedding
from spd_core.targets.sparse_features import SparseFeatures
from spd_core.targets.spec import ToyTargetSpec
from spd_core.targets.tms import TMSModel

logger = logging.getLogger(__name__)


def build_model(spec: ToyTargetSpec) -> TMSModel | ResidualMLP:
    """The untrained architecture of `spec` (weights from torch's global RNG; see `train_*`)."""
    if spec.kind == "tms":
        assert spec.n_hidden is not None
        return TMSModel(spec.n_features, spec.n_hidden, spec.n_hidden_layers, spec.identity_hidden)
    assert spec.d_embed is not None and spec.d_mlp is not None and spec.n_layers is not None
    return ResidualMLP(spec.n_features, spec.d_embed, spec.d_mlp, spec.n_layers)


def training_data(spec: ToyTargetSpec) -> SparseFeatures:
    """The data distribution a target is trained on (and decomposed on)."""
    return SparseFeatures(spec.n_features, spec.feature_probability, spec.value_range)


@torch.no_grad()
def init_linear_(layer: nn.Linear, generator: torch.Generator, zero_bias: bool = False) -> None:
    """nn.Linear's default init, U(±1/sqrt(fan_in)) for weight and bias, drawn from `generator`."""
    bound = 1.0 / math.sqrt(layer.in_features)
    layer.weight.uniform_(-bound, bound, generator=generator)
    if layer.bias is not None:
        if zero_bias:
            layer.bias.zero_()
        else:
            layer.bias.uniform_(-bound, bound, generator=generator)


def lr_at(step: int, steps: int, lr: float, schedule: str) -> float:
    """Constant, or cosine from `lr` at step 0 to 0 at step `steps - 1`."""
    if schedule == "constant" or steps <= 1:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / (steps - 1)))


def _fit(
    params: list[nn.Parameter],
    batch_loss: Callable[[Tensor], Tensor],
    spec: ToyTargetSpec,
    generator: torch.Generator,
) -> float:
    """AdamW on `params` for `spec.train_steps` fresh batches; returns the last batch loss."""
    data = training_data(spec)
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    loss_value = float("nan")
    log_every = max(spec.train_steps // 10, 1)
    for step in range(spec.train_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec.train_steps, spec.lr, spec.lr_schedule)
        loss = batch_loss(data.generate(spec.batch_size, generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = loss.item()
        if step % log_every == 0 or step == spec.train_steps - 1:
            logger.info("train %s step %d loss %.3e", spec.kind, step, loss_value)
    return loss_value


def train_tms(spec: ToyTargetSpec) -> TMSModel:
    """Train TMS with tied weights on loss mean((|x| - y)²); linear2.weight = W1ᵀ at the end."""
    generator = torch.Generator().manual_seed(spec.seed)
    model = build_model(spec)
    assert isinstance(model, TMSModel)
    init_linear_(model.linear1, generator)
    if not spec.identity_hidden:
        for layer in model.hidden_layers:
            init_linear_(layer, generator)
    init_linear_(model.linear2, generator, zero_bias=spec.bias_init_zero)

    def batch_loss(x: Tensor) -> Tensor:
        return F.mse_loss(model.forward_tied(x), x.abs())

    _fit(model.trainable_parameters(), batch_loss, spec, generator)
    model.materialise_tied_()
    return model


def train_resid_mlp(spec: ToyTargetSpec) -> ResidualMLP:
    """Train the residual MLP on labels ReLU(x) + x with loss mean((ŷ - y)²), embedding fixed."""
    generator = torch.Generator().manual_seed(spec.seed)
    model = build_model(spec)
    assert isinstance(model, ResidualMLP)
    model.set_embedding_(random_unit_embedding(model.n_features, model.d_embed, generator))
    for block in model.layers:
        init_linear_(block.mlp_in, generator)
        init_linear_(block.mlp_out, generator)

    def batch_loss(x: Tensor) -> Tensor:
        return F.mse_loss(model(x), F.relu(x) + x)

    _fit([p for p in model.parameters() if p.requires_grad], batch_loss, spec, generator)
    return model


def train_toy_target(spec: ToyTargetSpec) -> TMSModel | ResidualMLP:
    """Train the target of `spec` from its seed (unfrozen, train mode)."""
    return train_tms(spec) if spec.kind == "tms" else train_resid_mlp(spec)
