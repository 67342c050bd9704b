"""A few-step Hugging Face recipe on the shipped fixture text, shared by the real-model tests."""

from __future__ import annotations

from pathlib import Path

FIXTURE = str(Path(__file__).parent / "fixtures" / "tiny_corpus")


def tiny_hf_config(model: str, modules: dict[str, int], seq_len: int = 12, **fields) -> dict:
    """KL recipe (importance minimality + stochastic subset recon), batch 2, 3 steps; `fields`
    override any top-level key."""
    return {
        "target": {
            "kind": "hf",
            "model": model,
            "data": {"corpus": FIXTURE, "seq_len": seq_len, "eval_fraction": 0.3},
        },
        "module_info": [{"module_pattern": p, "C": c} for p, c in modules.items()],
        "pretrained_model_output_attr": "logits",
        "loss_metric_configs": [
            {"classname": "ImportanceMinimalityLoss", "coeff": 3e-4, "pnorm": 2.0},
            {"classname": "StochasticReconSubsetLoss", "coeff": 1.0},
        ],
        "output_loss_type": "kl",
        "batch_size": 2,
        "steps": 3,
        "train_log_freq": 1,
        "autocast_bf16": False,
        "ci_alive_threshold": 0.0,
        "eval": {"n_eval_batches": 1},
        **fields,
    }
