"""A store written by an earlier version still opens and loads: its stored config is part of the
public contract, so a config field removed or renamed must keep old stores readable."""

from pathlib import Path

import torch

from spd_core.eval.evaluation import one_hot_ci
from spd_core.eval.metrics.ci_patterns import identity_ci_error
from spd_core.loading import load_component_model
from spd_core.store import FactorStore

# `spd decompose tms-5-2 --steps 50 --no-ray` with code version 0.1.0 (commit 93f0ae6)
FIXTURE = Path(__file__).parent / "fixtures" / "stores" / "tms-5-2-schema1.zarr"


def test_a_store_from_version_0_1_0_loads_and_reproduces_its_stored_figures():
    store = FactorStore.open(FIXTURE)
    assert (store.schema_version, store.code_version) == (1, "0.1.0")
    model, config = load_component_model(FIXTURE)
    assert config.steps == 50
    for name in ("linear1", "linear2"):
        comp = model.components_of(name)
        assert torch.equal(comp.U.detach(), torch.as_tensor(store.U(name)))
        assert torch.equal(comp.V.detach(), torch.as_tensor(store.V(name)))
    ci = one_hot_ci(model, 5)
    for name in ("linear1", "linear2"):
        assert identity_ci_error(ci[name]) == store.metrics[f"identity_ci_error/{name}"]
