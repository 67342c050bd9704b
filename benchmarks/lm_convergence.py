"""How a language-model decomposition converged: its whole evaluation at every `eval_freq` step,
read from the store's curves (a run with `eval.during_training: true`).

    python benchmarks/lm_convergence.py STORE [--markdown]

One JSON line per figure and evaluated step: CE- and KL-unrecovered under CI, rounded-CI,
stochastic and PGD masks (0: as good as the target, 1: as bad as ablating every component), L0
per token in total and per module, alive components in total. `--markdown` prints the same as a
table (one row per step) instead.
"""

from __future__ import annotations

import argparse

import numpy as np
from jsonl import emit

from spd_core.store import FactorStore

MASKS = ("ci", "rounded", "stoch", "pgd")


def evaluated_steps(store: FactorStore) -> list[dict[str, float]]:
    """Per step with the whole evaluation, its figures (`eval/` prefix dropped) and `step`."""
    curves = store.curves()
    probe = curves.get("eval/l0/total")
    if probe is None:
        raise SystemExit(
            f"{store.path}: no evaluation during training in its curves; decompose with "
            "`eval: {during_training: true}` in the config"
        )
    rows = []
    for i in np.flatnonzero(np.isfinite(probe)):
        row = {k.removeprefix("eval/"): float(v[i]) for k, v in curves.items() if k[:5] == "eval/"}
        row["step"] = int(curves["step"][i])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", help="a store written with eval.during_training")
    parser.add_argument("--markdown", action="store_true", help="print a table, not JSON lines")
    args = parser.parse_args()
    store = FactorStore.open(args.store)
    rows = evaluated_steps(store)
    c_total = sum(int(store.U(m).shape[0]) for m in store.modules)
    if args.markdown:
        masks = " | ".join(f"CE/KL {m}" for m in MASKS)
        print(f"| step | {masks} | L0 (of {c_total}) | alive |")
        print("|---" * (len(MASKS) + 3) + "|")
    for row in rows:
        alive = sum(v for k, v in row.items() if k.startswith("alive/"))
        if args.markdown:
            cells = " | ".join(
                f"{row[f'lm/ce_unrecovered_{m}']:.3f} / {row[f'lm/kl_unrecovered_{m}']:.3f}"
                for m in MASKS
            )
            print(f"| {row['step']} | {cells} | {row['l0/total']:.1f} | {alive:.0f} |")
            continue
        step = row["step"]
        for m in MASKS:
            emit(f"{step}/lm/ce_unrecovered_{m}", row[f"lm/ce_unrecovered_{m}"], "frac")
            emit(f"{step}/lm/kl_unrecovered_{m}", row[f"lm/kl_unrecovered_{m}"], "frac")
            emit(f"{step}/lm/kl_{m}", row[f"lm/kl_{m}"], "nats")
        for key in sorted(k for k in row if k.startswith("l0/")):
            emit(f"{step}/{key}", row[key], "components/token")
        emit(f"{step}/alive", alive, "components")
        emit(f"{step}/l0_fraction_of_c", row["l0/total"] / c_total, "frac")


if __name__ == "__main__":
    main()
