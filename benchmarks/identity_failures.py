"""Which one-hot inputs break the identity CI pattern in finished toy stores, as JSON lines; for
ResidualMLP targets also how much the target's layer uses each of those features.

    python benchmarks/identity_failures.py runs/rm2-s0.zarr runs/rm2-s1.zarr [--tol 0.1]

For every module under the config's `identity_ci` patterns, a feature breaks the pattern when,
after the best permutation, its dedicated component's CI is below 1 − tol or another component's
CI is above tol (the entries `identity_ci_error` counts). Per broken feature: its largest CI and
how many components exceed tol. For a ResidualMLP, `layer_share` is how much the output on that
one-hot input moves when the module's layer is skipped, over the sum of that movement across
layers, and `layer_share_rank` is the fraction of the features whose share in that layer is
lower (0: the feature the layer uses least).
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import torch
from jsonl import emit

from spd_core.eval.evaluation import one_hot_ci
from spd_core.eval.metrics.ci_patterns import identity_broken_inputs
from spd_core.loading import load_component_model
from spd_core.targets.resid_mlp import ResidualMLP


def report_store(path: Path, tol: float) -> None:
    """Emit the broken features of every identity-pattern module of one store."""
    model, config = load_component_model(path)
    tag = path.stem
    patterns = config.eval.identity_ci
    if not patterns:
        raise SystemExit(f"{path}: its config names no identity_ci pattern")
    n_features = max(p.n_features for p in patterns)
    ci = one_hot_ci(model, n_features)
    shares = model.target.layer_shares() if isinstance(model.target, ResidualMLP) else None
    for p in patterns:
        for name in [n for n in model.module_names if fnmatch.fnmatchcase(n, p.layer_pattern)]:
            rows = ci[name][: p.n_features]
            broken = identity_broken_inputs(rows, tol)
            emit(f"{tag}/{name}/broken_features", len(broken), "features")
            layer = int(name.split(".")[1]) if shares is not None else None
            for f in broken:
                emit(f"{tag}/{name}/feature{f}/max_ci", rows[f].max().item(), "")
                emit(
                    f"{tag}/{name}/feature{f}/components_over_tol",
                    int((rows[f] > tol).sum()),
                    "components",
                )
                if layer is not None:
                    share = shares[layer]
                    emit(f"{tag}/{name}/feature{f}/layer_share", share[f].item(), "")
                    emit(
                        f"{tag}/{name}/feature{f}/layer_share_rank",
                        (share < share[f]).float().mean().item(),
                        "",
                    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stores", nargs="+", type=Path, help="finished toy stores")
    parser.add_argument("--tol", type=float, default=0.1, help="pattern tolerance (default 0.1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.stores:
        report_store(path, args.tol)


if __name__ == "__main__":
    main()
