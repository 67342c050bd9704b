"""Evaluation of a decomposition: losses, CI-L0, alive components, ground-truth comparisons."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch
from torch import Tensor

from spd_core.config import Config
from spd_core.eval.metrics.ci_l0 import ci_l0, ever_important, with_l0_groups
from spd_core.eval.metrics.ci_patterns import dense_ci_error, identity_ci_error
from spd_core.eval.metrics.ground_truth import mmcs_ml2r
from spd_core.eval.metrics.lm_masks import CEKLMetric, ce_kl_values, masked_ce_kl
from spd_core.losses import LossContext, compute_losses
from spd_core.losses.hidden_acts import hidden_acts_errors
from spd_core.losses.pgd import pgd_forwards
from spd_core.losses.reconstruction import mean_divergence
from spd_core.model.component_model import ComponentModel
from spd_core.train.parallel.sharding import full_value, reshard
from spd_core.train.step import autocast_context

BatchFn = Callable[[int, torch.Generator | None], Tensor]


@torch.no_grad()
def one_hot_ci(model: ComponentModel, n_features: int, scale: float = 0.75) -> dict[str, Tensor]:
    """g_lower per module on the inputs eye(n_features) · scale: {module: (n_features, C)}."""
    device = next(model.components.parameters()).device
    acts = model.prepare(torch.eye(n_features, device=device) * scale)
    return model.causal_importances(acts).lower


def pattern_errors(ci: dict[str, Tensor], config: Config) -> dict[str, float]:
    """Identity/dense CI-pattern errors (tol 0.1) of one-hot CIs {module: (n_inputs, C)}, per
    module that `config.eval` names, and their total."""
    out: dict[str, float] = {}
    for p in config.eval.identity_ci:
        for name in fnmatch.filter(ci, p.layer_pattern):
            out[f"identity_ci_error/{name}"] = identity_ci_error(ci[name][: p.n_features])
    for p in config.eval.dense_ci:
        for name in fnmatch.filter(ci, p.layer_pattern):
            out[f"dense_ci_error/{name}"] = dense_ci_error(ci[name], p.k)
    if out:
        out["ci_error/total"] = sum(out.values())
    return out


def ci_pattern_errors(model: ComponentModel, config: Config, n_features: int) -> dict[str, float]:
    """`pattern_errors` of the model's CIs on the one-hot inputs."""
    return pattern_errors(one_hot_ci(model, n_features), config)


def evaluate(
    model: ComponentModel,
    config: Config,
    batch_fn: BatchFn,
    generator: torch.Generator | None,
    step: int,
    n_features: int | None = None,
    causal_lm: bool = False,
) -> dict[str, float]:
    """Average loss terms and CI-L0 (per module, per `eval.l0_groups` group, total) over eval
    batches; alive components (ever CI > threshold); what `config.eval` asks for: ground-truth
    metrics, `hidden_acts_recon/` per module and in total, and `pgd/recon` (the reconstruction
    under `eval.pgd`'s PGD masks). `causal_lm` adds `lm/` CE and KL under masks (PGD's too)."""
    sums: dict[str, float] = {}
    alive: dict[str, Tensor] = {}
    hidden: dict[str, list[float]] = {}
    lm = CEKLMetric()
    n = config.eval.n_eval_batches
    for _ in range(n):
        batch = batch_fn(config.effective_eval_batch_size, generator)
        with torch.no_grad(), autocast_context(config, batch.device):
            acts = model.prepare(batch)
            ci = model.causal_importances(acts, config.sampling, generator)
            ctx = LossContext(model, acts, ci, config, step / config.steps, generator)
            _, terms = compute_losses(ctx)
            means = {f"loss/{k}": float(v) for k, v in terms.items()}
            lm_values = (
                ce_kl_values(model, acts, ci, config.eval.rounding_threshold, generator)
                if causal_lm
                else {}
            )
            if config.eval.pgd is not None:
                forwards = pgd_forwards(ctx, config.eval.pgd, "all")
                means["pgd/recon"] = float(mean_divergence(ctx, forwards))
                if causal_lm:
                    lm_values.update(masked_ce_kl(model, acts, forwards[0], "pgd"))
            if causal_lm:
                lm.update(lm_values)
            if config.eval.hidden_acts_recon:
                for k, (sq, count) in hidden_acts_errors(ctx).items():
                    acc = hidden.setdefault(k, [0.0, 0.0])
                    acc[0], acc[1] = acc[0] + float(sq), acc[1] + count
        l0 = with_l0_groups(ci_l0(ci.lower, config.ci_alive_threshold), config.eval.l0_groups)
        means.update({f"l0/{k}": v for k, v in l0.items()})
        for k, v in means.items():
            sums[k] = sums.get(k, 0.0) + v / n
        for k, v in ever_important(ci.lower, config.ci_alive_threshold).items():
            alive[k] = alive[k] | v if k in alive else v
    out = dict(sums)
    out.update({f"alive/{k}": int(v.sum().item()) for k, v in alive.items()})
    if hidden:
        out.update({f"hidden_acts_recon/{k}": sq / count for k, (sq, count) in hidden.items()})
        total_sq, total_count = (sum(v[i] for v in hidden.values()) for i in (0, 1))
        out["hidden_acts_recon/total"] = total_sq / total_count
    if causal_lm:
        out.update({f"lm/{k}": v for k, v in lm.compute().items()})
    out.update(probe_metrics(model, config, n_features))
    return out


def probe_metrics(
    model: ComponentModel, config: Config, n_features: int | None
) -> dict[str, float]:
    """The figures of `evaluate` that need no data: CI-pattern errors on one-hot inputs and
    MMCS/ML2R against the ground truth, where `config.eval` asks for them. They draw no random
    numbers, so a run can log them every `eval_freq` steps without changing its course. Under
    FSDP every rank must call this: it gathers the factors, and shards them again after."""
    out: dict[str, float] = {}
    if n_features is not None and (config.eval.identity_ci or config.eval.dense_ci):
        out.update(ci_pattern_errors(model, config, n_features))
    gt = config.eval.ground_truth_module
    if gt is not None:
        comp = model.components_of(gt)
        U, V = full_value(comp.U.detach()), full_value(comp.V.detach())
        W = full_value(comp.weight)  # sharded with the factors under target sharding
        out.update({f"{k}/{gt}": v for k, v in mmcs_ml2r(U, V, W).items()})
    reshard(model)
    return out
