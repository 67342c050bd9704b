"""Metrics pinned on hand-made cases."""

import pytest
import torch

from spd_core.eval.evaluation import pattern_errors
from spd_core.eval.metrics.ci_l0 import ci_l0, ever_important
from spd_core.eval.metrics.ci_patterns import (
    dense_ci_error,
    identity_broken_inputs,
    identity_ci_error,
)
from spd_core.eval.metrics.ground_truth import mmcs_ml2r
from spd_core.presets import resolve_config


def test_ci_l0_is_strict_and_averages_positions():
    g = torch.tensor([[0.1, 0.2, 0.9], [0.0, 0.0, 0.11]])
    assert ci_l0({"a": g}, 0.1) == {"a": pytest.approx(1.5)}  # 0.1 itself does not count
    assert ever_important({"a": g}, 0.1)["a"].tolist() == [False, True, True]


def test_identity_error_zero_for_permuted_identity():
    ci = torch.zeros(3, 5)
    ci[0, 4], ci[1, 0], ci[2, 2] = 1.0, 0.95, 1.0
    assert identity_ci_error(ci) == 0


def test_identity_error_counts_misses_and_strays():
    ci = torch.zeros(3, 4)
    ci[0, 0], ci[1, 1], ci[2, 2] = 1.0, 0.5, 1.0  # one weak diagonal entry
    ci[0, 3] = 0.3  # one stray
    assert identity_ci_error(ci) == 2
    assert identity_broken_inputs(ci) == [0, 1]


def test_identity_broken_inputs_sees_a_feature_split_over_components():
    ci = torch.zeros(3, 5)
    ci[0, 1], ci[2, 0] = 1.0, 0.97
    ci[1, 2], ci[1, 3], ci[1, 4] = 0.5, 0.4, 0.3  # input 1 spread over three components
    assert identity_ci_error(ci) == 3  # a weak diagonal entry (0.5) and two strays
    assert identity_broken_inputs(ci) == [1]


def test_dense_error():
    ci = torch.zeros(4, 6)
    ci[:, 1] = 1.0
    ci[:, 3] = 1.0
    assert dense_ci_error(ci, k=2) == 0
    ci[2, 5] = 0.5  # a stray outside the dense block
    assert dense_ci_error(ci, k=2) == 1
    assert dense_ci_error(ci, k=3) == 1  # third heaviest column (5) is important nowhere


def test_mmcs_ml2r_perfect_and_scaled():
    W = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]])  # (d_out 2, n_in 3)
    # subcomponent j reads input j and writes column j
    V = torch.eye(3)
    U = W.T.clone()
    r = mmcs_ml2r(U, V, W)
    assert r["mmcs"] == pytest.approx(1.0) and r["ml2r"] == pytest.approx(1.0)
    r = mmcs_ml2r(U * 0.5, V, W)
    assert r["mmcs"] == pytest.approx(1.0) and r["ml2r"] == pytest.approx(0.5)


def test_mmcs_of_rotated_column():
    W = torch.tensor([[1.0], [0.0]])  # one input, column (1, 0)
    U = torch.tensor([[1.0, 1.0]])
    V = torch.tensor([[1.0]])
    r = mmcs_ml2r(U, V, W)
    assert r["mmcs"] == pytest.approx(2**-0.5, rel=1e-6)
    assert r["ml2r"] == pytest.approx(2**0.5, rel=1e-6)


def test_pattern_errors_scores_the_modules_the_config_names():
    # tms-5-2-id: identity on linear1 and linear2 (5 features), dense on hidden_layers.0 (k = 2)
    config = resolve_config("tms-5-2-id")
    exact = torch.zeros(5, 20)
    exact[torch.arange(5), torch.arange(5)] = 1.0
    one_stray = exact.clone()
    one_stray[0, 7] = 0.5
    dense = torch.zeros(5, 20)
    dense[:, :2] = 1.0
    dense[3, 9] = 0.2  # one entry outside the two dense columns
    ci = {"linear1": exact, "linear2": one_stray, "hidden_layers.0": dense, "other": one_stray}
    assert pattern_errors(ci, config) == {
        "identity_ci_error/linear1": 0,
        "identity_ci_error/linear2": 1,
        "dense_ci_error/hidden_layers.0": 1,
        "ci_error/total": 2,
    }
