"""Random token sequences with one repeated span: the data of the induction target.

Each row is filler tokens with a span of `k` distinct tokens written twice, first at `first` and
again at `second >= first + k`. Span tokens never occur as fillers in their row, so inside the
second copy the next token is fixed by one earlier occurrence (induction), while a filler's
successor is random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RepeatedSpans:
    """A batch: tokens (B, S) int64; per row the span length and the starts of both copies (B,)."""

    tokens: Tensor
    span_len: Tensor
    first: Tensor
    second: Tensor

    def induction_positions(self) -> tuple[Tensor, Tensor, Tensor]:
        """(rows, positions, sources): every position t of a second copy whose next token
        continues the span (t in [second, second + k - 2]) and the position after its match in
        the first copy, first + (t - second) + 1, where an induction head looks."""
        offsets = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        inside = offsets[None, :] <= (self.span_len - 2)[:, None]
        rows, offset = inside.nonzero(as_tuple=True)
        return rows, self.second[rows] + offset, self.first[rows] + offset + 1


class InductionData:
    """Generator of `RepeatedSpans` over `vocab_size` tokens, `seq_len` long, with span lengths
    uniform in [span_min, span_max]."""

    def __init__(self, vocab_size: int, seq_len: int, span_min: int, span_max: int) -> None:
        if not 2 <= span_min <= span_max:
            raise ValueError(
                f"span lengths need 2 <= span_min <= span_max, got {span_min}, {span_max}"
            )
        if 2 * span_max > seq_len:
            raise ValueError(f"two spans of {span_max} tokens do not fit seq_len {seq_len}")
        if vocab_size <= span_max:
            raise ValueError(
                f"vocab_size {vocab_size} must exceed span_max {span_max}: fillers use the "
                "tokens a row's span does not"
            )
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.span_min = span_min
        self.span_max = span_max

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> RepeatedSpans:
        """A batch drawn from `generator` (global RNG if None), in a fixed order of draws."""
        gen_device = generator.device if generator is not None else "cpu"
        V, S, B = self.vocab_size, self.seq_len, batch_size

        def uniform(shape: tuple[int, ...]) -> Tensor:
            return torch.rand(shape, generator=generator, device=gen_device)

        span_len = torch.randint(
            self.span_min, self.span_max + 1, (B,), generator=generator, device=gen_device
        )
        first = (uniform((B,)) * (S - 2 * span_len + 1)).long()
        second = first + span_len + (uniform((B,)) * (S - first - 2 * span_len + 1)).long()
        perm = uniform((B, V)).argsort(dim=1)  # the first span_max tokens may form the span
        filler_idx = self.span_max + (uniform((B, S)) * (V - self.span_max)).long()
        tokens = perm.gather(1, filler_idx)
        pos = torch.arange(S, device=gen_device)[None, :]
        for start in (first, second):
            offset = pos - start[:, None]
            inside = (offset >= 0) & (offset < span_len[:, None])
            span_tok = perm.gather(1, offset.clamp(0, self.span_max - 1))
            tokens = torch.where(inside, span_tok, tokens)
        return RepeatedSpans(
            tokens.to(device), span_len.to(device), first.to(device), second.to(device)
        )

    def generate(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """Token ids (batch_size, seq_len): the batch source of a decomposition."""
        return self.sample(batch_size, generator, device).tokens
