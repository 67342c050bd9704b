"""CE/KL under masks on a tiny language model."""

import pytest
import torch

from spd_core.config import ModulePattern
from spd_core.eval.metrics.ci_l0 import ci_l0, with_l0_groups
from spd_core.eval.metrics.lm_masks import CEKLMetric, ce_kl_values, next_token_ce, with_ce_recovery
from spd_core.model.component_model import ComponentModel
from tests.test_component_model import TinyLM


def test_next_token_ce_ignores_first_position_of_each_sequence():
    logits = torch.zeros(2, 3, 4)
    logits[0, 0, 1] = 10.0  # predicts token 1 after position 0 of sequence 0
    tokens = torch.tensor([[0, 1, 2], [3, 0, 1]])
    ce = next_token_ce(logits, tokens)
    # labels after shifting: positions (0,0)->1, (0,1)->2, (0,2)->ignored(seq1 pos0), (1,0)->0, (1,1)->1
    per = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 0], logits[0, 1], logits[1, 0], logits[1, 1]]),
        torch.tensor([1, 2, 0, 1]),
    )
    assert ce.item() == pytest.approx(per.item(), rel=1e-6)


def test_exact_factorisation_has_zero_kl_unmasked_and_full_unrecovered_at_zero():
    lm = TinyLM()
    model = ComponentModel(lm, [ModulePattern(module_pattern="head", C=8)], "mlp", [3])
    comp = model.components_of("head")
    with torch.no_grad():
        comp.V.copy_(torch.eye(8))
        comp.U.copy_(lm.head.weight.T)
    ids = torch.randint(0, 11, (3, 6))
    acts = model.prepare(ids)
    ci = model.causal_importances(acts)
    m = with_ce_recovery(ce_kl_values(model, acts, ci, generator=torch.Generator().manual_seed(0)))
    assert m["kl_unmasked"] == pytest.approx(0.0, abs=1e-6)
    assert m["ce_unrecovered_zero"] == pytest.approx(1.0)
    assert m["ce_unrecovered_unmasked"] == pytest.approx(0.0, abs=1e-5)
    assert m["ce_target"] == pytest.approx(next_token_ce(lm(ids), ids).item(), rel=1e-6)
    for key in ("kl_ci", "kl_stoch", "kl_random", "kl_rounded", "kl_zero"):
        assert m[key] >= 0.0


def test_ce_recovery_is_computed_from_batch_averaged_ces():
    metric = CEKLMetric()
    metric.update({"ce_target": 1.0, "ce_zero": 5.0, "ce_ci": 2.0, "kl_ci": 0.5, "kl_zero": 3.0})
    metric.update({"ce_target": 3.0, "ce_zero": 11.0, "ce_ci": 6.0, "kl_ci": 1.5, "kl_zero": 5.0})
    out = metric.compute()
    # means: target 2, zero 8, ci 4 -> unrecovered (4 - 2) / (8 - 2) = 1/3, not the mean of the
    # per-batch ratios 1/4 and 3/8; kl averages plainly
    assert out["ce_unrecovered_ci"] == pytest.approx(1 / 3)
    assert out["ce_difference_ci"] == pytest.approx(2.0)
    assert out["ce_unrecovered_zero"] == pytest.approx(1.0)
    assert out["kl_ci"] == pytest.approx(1.0)
    assert out["kl_unrecovered_ci"] == pytest.approx(1.0 / 4.0)  # mean KL 1 over mean KL_zero 4
    assert out["kl_unrecovered_zero"] == pytest.approx(1.0)
    assert "ce_unrecovered_target" not in out


def test_total_l0_per_token_sums_important_components_over_modules():
    ci = {
        "a": torch.tensor([[[0.0, 0.2, 0.9], [0.0, 0.0, 0.0]]]),
        "b": torch.tensor([[[0.5, 0.0], [0.05, 0.3]]]),
    }
    # per token: 3 and 1 important at 0.1, 3 and 2 at 0.0 (strict >)
    assert with_l0_groups(ci_l0(ci, 0.1), {})["total"] == pytest.approx(2.0)
    assert with_l0_groups(ci_l0(ci, 0.0), {})["total"] == pytest.approx(2.5)
