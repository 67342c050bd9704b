"""Deterministic training of the induction target from `spec.seed`.

One `torch.Generator` seeded by the seed draws the initialisation and every batch, in a fixed
order, so the same spec gives bit-identical weights on CPU at a fixed thread count.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from spd_core.targets.induction.data import InductionData, RepeatedSpans
from spd_core.targets.induction.model import InductionTransformer
from spd_core.targets.induction.spec import InductionSpec
from spd_core.targets.training import init_linear_

logger = logging.getLogger(__name__)


def build_induction_model(spec: InductionSpec) -> InductionTransformer:
    """The untrained architecture of `spec` (weights from torch's global RNG; see training)."""
    return InductionTransformer(
        spec.vocab_size, spec.seq_len, spec.d_model, spec.n_heads, spec.n_layers
    )


def induction_data(spec: InductionSpec) -> InductionData:
    """The data a target is trained on and decomposed on."""
    return InductionData(spec.vocab_size, spec.seq_len, spec.span_min, spec.span_max)


def induction_lr(step: int, spec: InductionSpec) -> float:
    """Linear warm-up to `spec.lr` over `warmup_steps`, then cosine to 0 at the last step."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    rest = max(spec.train_steps - spec.warmup_steps - 1, 1)
    return spec.lr * 0.5 * (1.0 + math.cos(math.pi * (step - spec.warmup_steps) / rest))


def induction_loss(logits: Tensor, batch: RepeatedSpans, induction_weight: float) -> Tensor:
    """(1 − w) · CE over all next-token predictions + w · CE over those inside second copies."""
    tokens = batch.tokens
    everywhere = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    rows, pos, _ = batch.induction_positions()
    repeated = F.cross_entropy(logits[rows, pos], tokens[rows, pos + 1])
    return (1.0 - induction_weight) * everywhere + induction_weight * repeated


def train_induction(spec: InductionSpec) -> InductionTransformer:
    """Train the target of `spec` from its seed (unfrozen, train mode)."""
    generator = torch.Generator().manual_seed(spec.seed)
    model = build_induction_model(spec)
    with torch.no_grad():
        model.embed.weight.normal_(0.0, 1.0, generator=generator)
        for block in model.layers:
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                init_linear_(getattr(block.attn, proj), generator)
            block.attn.rel_bias.zero_()
        init_linear_(model.unembed, generator)
    biases = [p for n, p in model.named_parameters() if n.endswith("rel_bias")]
    others = [p for n, p in model.named_parameters() if not n.endswith("rel_bias")]
    groups = [
        {"params": others, "lr_mult": 1.0},
        {"params": biases, "lr_mult": spec.rel_bias_lr_mult, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    data = induction_data(spec)
    log_every = max(spec.train_steps // 10, 1)
    for step in range(spec.train_steps):
        for group in opt.param_groups:
            group["lr"] = induction_lr(step, spec) * group["lr_mult"]
        batch = data.sample(spec.batch_size, generator)
        loss = induction_loss(model(batch.tokens), batch, spec.induction_loss_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == spec.train_steps - 1:
            logger.info("train induction step %d loss %.4f", step, loss.item())
    return model
