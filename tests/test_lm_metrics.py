"""CE/KL under masks on a tiny language model."""

import pytest
import torch

from spd_core.component_model import ComponentModel
from spd_core.config import ModulePattern
from spd_core.metrics.lm_masks import ce_kl_metrics, next_token_ce
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
    m = ce_kl_metrics(model, acts, ci, generator=torch.Generator().manual_seed(0))
    assert m["kl_unmasked"] == pytest.approx(0.0, abs=1e-6)
    assert m["ce_unrecovered_zero"] == pytest.approx(1.0)
    assert m["ce_unrecovered_unmasked"] == pytest.approx(0.0, abs=1e-5)
    assert m["ce_target"] == pytest.approx(next_token_ce(lm(ids), ids).item(), rel=1e-6)
    for key in ("kl_ci", "kl_stoch", "kl_random", "kl_rounded", "kl_zero"):
        assert m[key] >= 0.0
