"""TinyLlamaSpec: all that determines a tiny Llama target (tokenizer, architecture, data, recipe)."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spd_core.text.corpora import CORPORA


class TinyLlamaSpec(BaseModel):
    """A Llama decoder (RMSNorm, RoPE, SwiGLU) with its own byte-level BPE tokenizer, both trained
    from `seed` on the train split of the packaged corpora."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # tokenizer and data
    corpora: tuple[str, ...] = tuple(CORPORA)
    eval_fraction: float = Field(default=0.1, gt=0, lt=1)
    vocab_size: int = Field(default=4096, ge=300)
    # architecture (transformers' LlamaConfig)
    n_layers: int = Field(gt=0)
    d_model: int = Field(default=128, gt=0)
    n_heads: int = Field(default=4, gt=0)
    d_mlp: int = Field(default=512, gt=0)
    context_length: int = Field(default=128, ge=8)
    # training (AdamW, linear warm-up then cosine to lr_min_frac · lr)
    seed: int = 0
    train_steps: int = Field(gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=3e-3, gt=0)
    lr_min_frac: float = Field(default=0.1, ge=0, le=1)
    warmup_steps: int = Field(default=100, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    init_std: float = Field(default=0.02, gt=0)
    # check: held-out windows scored, and the least CE gain over the unigram model (nats/token)
    eval_windows: int = Field(default=256, gt=0)
    min_gain_over_unigram: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TinyLlamaSpec:
        unknown = [c for c in self.corpora if c not in CORPORA]
        if unknown or not self.corpora:
            raise ValueError(
                f"corpora {list(self.corpora)}: each must be one of {', '.join(CORPORA)}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self

    def cache_key(self) -> str:
        """Stable hash of the spec (its JSON), naming the cached model folder."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# 1000 steps of 32 windows of 128 tokens (4.1M tokens, about one epoch of the three corpora):
# about 15 minutes on one CPU thread (0.8-1 s a step).
TINY_LLAMAS: dict[str, TinyLlamaSpec] = {
    "tiny-llama-2l": TinyLlamaSpec(n_layers=2, train_steps=1000),
    "tiny-llama-4l": TinyLlamaSpec(n_layers=4, train_steps=1000),
}
