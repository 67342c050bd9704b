"""Labels over gRPC: GetComponentSummary and ListComponents carry each component's label, scores
and token summary from the store's interp/ group, ListComponents filters by a label substring,
and `spd query summary` prints them."""

from __future__ import annotations

import pytest
import zarr

from services.cli import main
from spd_client import Client

pytestmark = pytest.mark.ray
APP = "spd-labels"
MODULE = "model.layers.3.mlp.down_proj"


@pytest.fixture(scope="module")
def app(server, labelled_text_store) -> str:
    from ray import serve

    from services.serving.app import build_app

    args = {"stores": [f"smol={labelled_text_store[0]}"], "replica_cpus": 0.5}
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}", blocking=False)
    yield server
    serve.delete(APP)


def _stored(path) -> dict:
    module = zarr.open_group(path / "interp", mode="r")["modules"][MODULE]
    return {name: list(module[name][:]) for name in ("status", "label", "token_summary")}


def test_served_interpretations_are_the_stored_labels(app, labelled_text_store, capsys):
    stored = _stored(labelled_text_store[0])
    with Client(app, application=APP) as client:
        for c in range(4):
            got = client.get_component_summary("smol", MODULE, c).stats.interpretation
            assert (got.status, got.label, got.token_summary) == (
                stored["status"][c],
                stored["label"][c],
                stored["token_summary"][c],
            )
            assert got.explainer_model.endswith("smollm2-135m-pretrained")
        rows = client.list_components("smol").components
        assert {r.component: r.interpretation.token_summary for r in rows} == dict(
            enumerate(stored["token_summary"])
        )
        shown = [stored["label"][c] or stored["token_summary"][c] for c in range(4)]
        needle = shown[0].split()[1].upper()  # a word of component 0's shown label, any case
        found = client.list_components("smol", label_contains=needle).components
        assert {r.component for r in found} == {
            c for c in range(4) if needle.lower() in shown[c].lower()
        }
        assert client.list_components("smol", label_contains="no such label zz").components == []
    assert (
        main(["query", "--address", app, "--application", APP, "summary", "smol", f"{MODULE}:0"])
        == 0
    )
    assert f"token summary {stored['token_summary'][0]}" in capsys.readouterr().out
