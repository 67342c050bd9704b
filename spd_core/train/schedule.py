"""Learning-rate schedule and importance-minimality p annealing (functions of the step)."""

import math

from spd_core.config import ScheduleConfig


def scheduled_value(step: int, steps: int, schedule: ScheduleConfig) -> float:
    """Value at `step` of `steps`: linear warm-up from 0, then decay reaching the end at steps-1."""
    warmup = int(steps * schedule.warmup_pct)
    if step < warmup:
        return schedule.start_val * step / warmup
    decay_steps = steps - warmup
    if decay_steps <= 1 or schedule.fn_type == "constant":
        return schedule.start_val
    progress = min((step - warmup) / (decay_steps - 1), 1.0)
    f = schedule.final_val_frac
    if schedule.fn_type == "cosine":
        multiplier = f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        multiplier = f + (1 - f) * (1 - progress)
    return schedule.start_val * multiplier


def annealed_p(
    frac: float, p: float, final_p: float | None, start_frac: float, end_frac: float
) -> float:
    """Exponent of the importance-minimality loss at training fraction `frac` = step/steps."""
    if final_p is None or start_frac >= 1.0 or frac < start_frac:
        return p
    if frac >= end_frac:
        return final_p
    t = (frac - start_frac) / (end_frac - start_frac)
    return p + (final_p - p) * t
