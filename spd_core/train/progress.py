"""Progress of a running decomposition: rate, ETA and a one-line summary."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spd_core.train.loop import LogRecord

# Of the whole evaluation run during training (`eval/…`, every figure goes to the store's
# curves), the ones the progress line shows
EVAL_HEADLINE = (
    "eval/lm/ce_unrecovered_ci",
    "eval/lm/ce_unrecovered_rounded",
    "eval/lm/ce_unrecovered_stoch",
    "eval/lm/ce_unrecovered_pgd",
    "eval/pgd/recon",
    "eval/l0/total",
)


@dataclass
class ProgressEvent:
    step: int
    steps: int
    terms: dict[str, float]
    l0: dict[str, float]
    steps_per_s: float
    eta_s: float
    probes: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """`step 100/1000 | loss/… | L0 … | 35.2 steps/s | ETA 0:00:26`, then the evaluation
        figures on their own line when the step has them (`  eval mmcs/linear1=0.9998 …`); of
        the whole evaluation during training, its headline figures. The first line, before any
        rate is known, shows `-- steps/s`."""
        terms = " ".join(f"{k}={v:.3g}" for k, v in self.terms.items())
        l0 = " ".join(f"{k}={v:.2f}" for k, v in self.l0.items())
        eta = (
            time.strftime("%H:%M:%S", time.gmtime(max(self.eta_s, 0)))
            if math.isfinite(self.eta_s)
            else "--:--:--"
        )
        width = len(str(self.steps))
        line = (
            f"step {self.step:>{width}}/{self.steps} | {terms} | L0 {l0} | "
            f"{f'{self.steps_per_s:.1f}' if self.steps_per_s > 0 else '--'} steps/s | ETA {eta}"
        )
        shown = {
            k: v for k, v in self.probes.items() if not k.startswith("eval/") or k in EVAL_HEADLINE
        }
        if shown:
            line += "\n  eval " + " ".join(f"{k}={v:.4g}" for k, v in shown.items())
        return line


def progress_event(record: LogRecord, steps: int, steps_per_s: float) -> ProgressEvent:
    """The progress line's data for a logged step, with the ETA at the current rate."""
    eta = (steps - record.step) / steps_per_s if steps_per_s > 0 else float("inf")
    return ProgressEvent(
        record.step, steps, record.terms, record.l0, steps_per_s, eta, record.probes
    )


class RateMeter:
    """Steps per second over the recent window, for ETA."""

    def __init__(self, start_step: int = 0):
        self._t, self._step = time.perf_counter(), start_step

    def update(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self._step) / max(now - self._t, 1e-9)
        self._t, self._step = now, step
        return rate
