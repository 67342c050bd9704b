"""Served answers over a real gRPC channel equal spd_core's in-process ones (within 1e-6)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from services.serving.deployment import BATCH_METADATA
from spd_client import AsyncClient
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import decomposition_service_pb2_grpc as pb_grpc
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import to_proto
from spd_core.edit import export_edited, load_edited_toy_target
from spd_core.loading import load_component_model
from spd_core.queries import MaskSpec, ablated_outputs, importances
from spd_core.store import FactorStore
from tests.serve.conftest import PRESETS, TOKEN

pytestmark = pytest.mark.ray
ATOL = 1e-6


@pytest.fixture(scope="module")
def models(stores):
    return {name: load_component_model(path)[0] for name, path in stores.items()}


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 5), dtype=np.float32)


def test_lists_and_describes_both_decompositions(client, stores):
    listed = client.list_decompositions()
    assert [d.name for d in listed] == sorted(PRESETS)
    full = client.get_decomposition("tms-5-2")
    store = FactorStore.open(stores["tms-5-2"])
    assert [(m.name, m.c, m.d_in, m.d_out) for m in full.modules] == [
        (n, lay.C, lay.d_in, lay.d_out) for n, lay in store.modules.items()
    ]
    assert list(full.input_shape) == [5] and full.input_dtype == tensor_pb2.DTYPE_FLOAT32
    assert json.loads(full.config_json)["steps"] == 20
    assert full.metrics["l0/linear1"] == pytest.approx(store.metrics["l0/linear1"])
    assert full.modules[0].alive == store.metrics["alive/linear1"]


@pytest.mark.parametrize("name", PRESETS)
def test_dense_importances_equal_in_process(client, models, name):
    x = _inputs(7, seed=1)
    served = client.compute_importances(name, x)
    expected = importances(models[name], torch.from_numpy(x))
    assert set(served) == set(expected)
    for module, ci in expected.items():
        assert served[module].indices is None
        np.testing.assert_allclose(served[module].values, ci.numpy(), atol=ATOL, rtol=0)


def test_upper_importances_of_one_module(client, models):
    x = _inputs(3, seed=2)
    served = client.compute_importances("tms-5-2", x, kind="upper", modules=["linear2"])
    expected = importances(models["tms-5-2"], torch.from_numpy(x), "upper")["linear2"]
    assert list(served) == ["linear2"]
    np.testing.assert_allclose(served["linear2"].values, expected.numpy(), atol=ATOL, rtol=0)


def test_top_k_and_threshold_select_from_the_in_process_importances(client, models):
    x = _inputs(6, seed=3)
    ci = importances(models["tms-5-2"], torch.from_numpy(x))["linear1"].numpy()
    top = client.compute_importances("tms-5-2", x, top_k=3)["linear1"]
    assert top.values.shape == (6, 3) and top.indices.shape == (6, 3)
    np.testing.assert_allclose(np.take_along_axis(ci, top.indices, 1), top.values, atol=ATOL)
    np.testing.assert_allclose(top.values, -np.sort(-ci, axis=1)[:, :3], atol=ATOL, rtol=0)
    sparse = client.compute_importances("tms-5-2", x, threshold=0.3)["linear1"]
    np.testing.assert_array_equal(sparse.indices, np.argwhere(ci > 0.3))
    np.testing.assert_allclose(sparse.values, ci[ci > 0.3], atol=ATOL, rtol=0)


def test_stream_returns_every_input_in_chunks(client, models):
    x = _inputs(50, seed=4)
    chunks = list(client.stream_importances("tms-5-2-id", x, chunk_size=16))
    assert [(c.start, c.stop) for c in chunks] == [(0, 16), (16, 32), (32, 48), (48, 50)]
    expected = importances(models["tms-5-2-id"], torch.from_numpy(x))
    for module, ci in expected.items():
        served = np.concatenate([c.importances[module].values for c in chunks])
        np.testing.assert_allclose(served, ci.numpy(), atol=ATOL, rtol=0)


def test_async_client_streams_and_answers(server, models):
    x = _inputs(20, seed=5)

    async def run():
        async with AsyncClient(server, token=TOKEN) as client:
            chunks = [c async for c in client.stream_importances("tms-5-2", x, chunk_size=8)]
            dense = await client.compute_importances("tms-5-2", x)
            return chunks, dense

    chunks, dense = asyncio.run(run())
    assert [c.stop for c in chunks] == [8, 16, 20]
    expected = importances(models["tms-5-2"], torch.from_numpy(x))["linear1"].numpy()
    np.testing.assert_allclose(dense["linear1"].values, expected, atol=ATOL, rtol=0)


def test_concurrent_requests_on_two_decompositions_are_batched_and_exact(server, models):
    """32 concurrent callers, alternating decompositions; each answer matches its own inputs."""
    import grpc

    inputs = [_inputs(1 + i % 3, seed=100 + i) for i in range(32)]
    names = [PRESETS[i % 2] for i in range(32)]

    async def one(stub, name, x):
        request = pb.ComputeImportancesRequest(decomposition=name, inputs=to_proto(x))
        call = stub.ComputeImportances(request, metadata=[("authorization", f"Bearer {TOKEN}")])
        response = await call
        trailing = dict(await call.trailing_metadata())
        return response, int(trailing[BATCH_METADATA])

    async def run():
        async with grpc.aio.insecure_channel(server) as channel:
            stub = pb_grpc.DecompositionServiceStub(channel)
            return await asyncio.gather(
                *(one(stub, n, x) for n, x in zip(names, inputs, strict=True))
            )

    results = asyncio.run(run())
    assert max(batched for _, batched in results) > 1, "no two requests shared a forward"
    for (response, _), name, x in zip(results, names, inputs, strict=True):
        expected = importances(models[name], torch.from_numpy(x))
        for entry in response.importances:
            values = np.frombuffer(entry.values.data, np.float32).reshape(entry.values.shape)
            np.testing.assert_allclose(values, expected[entry.module].numpy(), atol=ATOL, rtol=0)


ABLATIONS = [
    MaskSpec(mode="ablate", components={"linear1": [0, 2]}, use_delta=True),
    MaskSpec(mode="keep", modules=["linear1"], components={"linear1": [1]}),
    MaskSpec(mode="ci"),
    MaskSpec(mode="rounded_ci", rounding_threshold=0.2, use_delta=True),
    MaskSpec(mode="stochastic", n_samples=3, seed=11, use_delta=True),
]


@pytest.mark.parametrize("spec", ABLATIONS, ids=lambda s: s.mode)
@pytest.mark.parametrize("divergence", ["mse", "kl"])
def test_ablated_outputs_equal_in_process(client, models, spec, divergence):
    x = _inputs(4, seed=6)
    served = client.ablate(
        "tms-5-2",
        x,
        spec.mode,
        components=spec.components,
        modules=spec.modules or (),
        use_delta=spec.use_delta,
        n_samples=spec.n_samples,
        seed=spec.seed,
        rounding_threshold=spec.rounding_threshold,
        divergence=divergence,
    )
    expected = ablated_outputs(models["tms-5-2"], torch.from_numpy(x), spec, divergence)
    assert served.divergence_type == divergence
    assert served.outputs.shape == (spec.n_samples, 4, 5)
    np.testing.assert_allclose(served.outputs, expected.outputs.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(served.target_output, expected.target.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(served.divergence, expected.divergence.numpy(), atol=ATOL, rtol=0)


def test_an_exported_edit_equals_the_served_ablation_with_the_delta(client, stores, tmp_path):
    selection = {"linear1": [0, 2], "linear2": [4]}
    export_edited(stores["tms-5-2"], selection, tmp_path / "edited")
    edited = load_edited_toy_target(tmp_path / "edited")
    x = _inputs(8, seed=3)
    served = client.ablate("tms-5-2", x, "ablate", components=selection, use_delta=True)
    with torch.no_grad():
        got = edited(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, served.outputs[0], atol=ATOL, rtol=0)
    assert np.abs(got - served.target_output).max() > 1e-3, "the edit changed nothing"


def test_components_are_the_stored_rows(client, stores):
    store = FactorStore.open(stores["tms-5-2-id"])
    got = client.get_components("tms-5-2-id", "linear2", [3, 0])
    np.testing.assert_array_equal(got.indices, [3, 0])
    np.testing.assert_array_equal(got.u, store.U("linear2", [3, 0]))
    np.testing.assert_array_equal(got.v, store.V("linear2", [3, 0]))
