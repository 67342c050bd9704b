"""Deterministic training of a tiny Llama from `spec.seed` on a token stream, with progress.

One `torch.Generator` seeded by the seed draws the initialisation (normal, std `init_std`; norms
at 1) and every batch of windows, so the same spec and token stream give bit-identical weights
on CPU at a fixed thread count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spd_core.extras import require
from spd_core.targets.tiny_llama.spec import TinyLlamaSpec
from spd_core.targets.tiny_llama.tokens import random_windows


def build_llama(spec: TinyLlamaSpec, vocab_size: int, eos_id: int) -> Any:
    """An untrained `LlamaForCausalLM` of the spec's sizes (weights from torch's global RNG,
    whose state is left as it was)."""
    require("transformers", "a tiny Llama target")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_heads,
        max_position_embeddings=spec.context_length,
        rms_norm_eps=1e-5,
        initializer_range=spec.init_std,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    with torch.random.fork_rng(devices=[]):
        return LlamaForCausalLM(config)


@torch.no_grad()
def init_llama_(model: Any, std: float, generator: torch.Generator) -> None:
    """Every weight matrix and embedding ~ N(0, std²), every norm weight 1, in parameter order."""
    for param in model.parameters():
        if param.dim() == 1:
            param.fill_(1.0)
        else:
            param.normal_(0.0, std, generator=generator)


def llama_lr(step: int, spec: TinyLlamaSpec) -> float:
    """Linear warm-up to `lr`, then cosine down to `lr_min_frac · lr` at the last step."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(spec.train_steps - spec.warmup_steps - 1, 1)
    floor = spec.lr_min_frac
    return spec.lr * (floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def next_token_loss(logits: Tensor, windows: Tensor) -> Tensor:
    """Mean CE of predicting window token t+1 from position t."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), windows[:, 1:].flatten())


def train_llama(
    spec: TinyLlamaSpec,
    stream: Tensor,
    vocab_size: int,
    eos_id: int,
    log: Callable[[str], None] = print,
) -> Any:
    """Train on random windows of `stream` (unfrozen, train mode); `log` gets a progress line
    (step, loss, tokens/s, ETA) about every 2% of the run."""
    generator = torch.Generator().manual_seed(spec.seed)
    model = build_llama(spec, vocab_size, eos_id)
    init_llama_(model, spec.init_std, generator)
    model.train()
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.95),
        weight_decay=spec.weight_decay,
    )
    every = max(spec.train_steps // 50, 1)
    start = time.perf_counter()
    for step in range(spec.train_steps):
        for group in opt.param_groups:
            group["lr"] = llama_lr(step, spec)
        windows = random_windows(stream, spec.batch_size, spec.context_length, generator)
        loss = next_token_loss(model(input_ids=windows).logits, windows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        if step % every == 0 or step == spec.train_steps - 1:
            elapsed = time.perf_counter() - start
            done = step + 1
            rate = done * spec.batch_size * spec.context_length / elapsed
            eta = elapsed / done * (spec.train_steps - done)
            log(
                f"step {done}/{spec.train_steps}  loss {loss.item():.3f}  "
                f"{rate:,.0f} tokens/s  elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min"
            )
    return model
