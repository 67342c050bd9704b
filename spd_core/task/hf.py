"""A decomposition task for a Hugging Face model on windows of a text corpus."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import Tensor

from spd_core.config import Config, ConfigError, HFTargetConfig
from spd_core.hf.loading import load_hf_target
from spd_core.model.component_model import select_modules
from spd_core.task.definition import DecompositionTask
from spd_core.text.windows import WindowStream, eval_windows


def hf_task(
    config: Config,
    device: torch.device,
    cache_dir: Path | None = None,
    target_on_meta: bool = False,
) -> DecompositionTask:
    """Load the model (local files only), check the module patterns and the window length, and
    stream train / eval windows of the configured corpus from the cache.

    The batch functions ignore their generator: training windows stream from a shuffle seeded
    by `config.seed` (a resumed run skips the windows its finished steps used); evaluation
    cycles through one fixed held-out slice (the first n_eval_batches × eval batch size windows
    of the eval split), so every evaluation, at any step, sees the same text. With
    `target_on_meta` the model's parameters stay on the meta device and the task's
    `target_weights` reads them.
    """
    target_cfg = config.target
    if not isinstance(target_cfg, HFTargetConfig):
        raise ConfigError("target: hf_task needs a target of kind 'hf'")
    if config.pretrained_model_output_attr is None:
        raise ConfigError(
            "pretrained_model_output_attr: a Hugging Face model returns a ModelOutput; name the "
            "tensor to compare, e.g. logits (causal LMs) or last_hidden_state (encoders)"
        )
    hf = load_hf_target(target_cfg.model, target_cfg.model_class, cache_dir, target_on_meta)
    select_modules(hf.model, config.module_info)  # fail on bad patterns before reading data
    seq_len = target_cfg.data.seq_len
    if hf.spec["context_length"] and seq_len > hf.context_length:
        raise ConfigError(
            f"target.data.seq_len: {seq_len} tokens exceed the model's context of "
            f"{hf.context_length} tokens"
        )
    if config.output_loss_type == "kl" and not hf.causal_lm:
        raise ConfigError(
            f"output_loss_type: 'kl' needs next-token logits; {hf.spec['model_class']} is not a "
            "causal LM (transformers does not register it for AutoModelForCausalLM): use mse, or "
            "name the model's causal-LM class in target.model_class"
        )
    train = WindowStream(hf.tokenizer, target_cfg.data, "train", config.seed, cache_dir=cache_dir)
    eval_size = config.effective_eval_batch_size
    n_eval = config.eval.n_eval_batches
    held_out = eval_windows(hf.tokenizer, target_cfg.data, n_eval * eval_size, cache_dir)
    eval_calls = itertools.count()

    def batch_fn(batch_size: int, generator: torch.Generator | None) -> Tensor:
        return train.next_batch(batch_size).to(device)

    def eval_batch_fn(batch_size: int, generator: torch.Generator | None) -> Tensor:
        if batch_size != eval_size:
            raise ValueError(f"eval batches hold {eval_size} windows, not {batch_size}")
        start = (next(eval_calls) % n_eval) * eval_size
        return held_out[start : start + eval_size].to(device)

    return DecompositionTask(
        target=hf.model if target_on_meta else hf.model.to(device),
        batch_fn=batch_fn,
        target_spec=hf.spec,
        eval_batch_fn=eval_batch_fn,
        causal_lm=hf.causal_lm,
        skip_batches=lambda n_batches, batch_size: train.skip(n_batches * batch_size),
        target_weights=hf.weights,
    )
