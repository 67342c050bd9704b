"""CI-L0: how many subcomponents are causally important per position, per module, per named
group of modules and in total."""

import fnmatch

from torch import Tensor

from spd_core.config import ConfigError


def ci_l0(
    ci_lower: dict[str, Tensor], threshold: float, item_weights: Tensor | None = None
) -> dict[str, float]:
    """Per module, mean over positions of #{c : g_c > threshold} (strict); `item_weights`
    (batch,) counts each item as that many items."""
    out = {}
    for name, g in ci_lower.items():
        counts = (g > threshold).sum(-1).float()
        if item_weights is not None:
            w = item_weights.reshape(-1, *[1] * (counts.dim() - 1)).expand_as(counts)
            out[name] = ((counts * w).sum() / w.sum()).item()
        else:
            out[name] = counts.mean().item()
    return out


def ever_important(ci_lower: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """Per module, a (C,) bool: was the component important at any position of this batch."""
    return {name: (g > threshold).reshape(-1, g.shape[-1]).any(0) for name, g in ci_lower.items()}


def l0_group_members(
    groups: dict[str, str | list[str]], module_names: list[str]
) -> dict[str, list[str]]:
    """The modules of each L0 group (fnmatch patterns over module names). Refuses a pattern that
    matches no module, and a group named like a module or 'total' (always reported)."""
    members: dict[str, list[str]] = {}
    for group, patterns in groups.items():
        if group == "total" or group in module_names:
            raise ConfigError(
                f"eval.l0_groups: group name '{group}' is taken (by "
                f"{'the total L0' if group == 'total' else 'a module'}); choose another name"
            )
        chosen: list[str] = []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            hits = fnmatch.filter(module_names, pattern)
            if not hits:
                raise ConfigError(
                    f"eval.l0_groups.{group}: pattern '{pattern}' matched no decomposed module; "
                    f"modules: {', '.join(module_names[:12])}"
                )
            chosen += [n for n in hits if n not in chosen]
        members[group] = chosen
    return members


def with_l0_groups(
    per_module: dict[str, float], groups: dict[str, str | list[str]]
) -> dict[str, float]:
    """Per-module L0 (per position), plus each group's sum over its modules and the total."""
    out = dict(per_module)
    for group, names in l0_group_members(groups, list(per_module)).items():
        out[group] = sum(per_module[n] for n in names)
    out["total"] = sum(per_module.values())
    return out
