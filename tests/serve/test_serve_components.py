"""ListComponents, GetComponentSummary and GetComponentContexts from a harvest over gRPC (a second
Serve application): answers equal the store's harvest read in-process, pages cover every
component once, and bad requests get INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION; the
`spd query` commands and `spd inspect --component` print the same."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.cli import main
from services.commands.component_summary import jsonable
from spd_client import AsyncClient, Client
from spd_core.harvest import HarvestReader, HarvestSettings, harvest, harvest_inputs, write_harvest
from spd_core.interp import harvest_token_summaries
from spd_core.loading import load_decomposition
from spd_core.store import FactorStore

pytestmark = pytest.mark.ray
APP = "spd-harvest"
TEXT_MODULE = "model.layers.3.mlp.down_proj"


@pytest.fixture(scope="module")
def replaceable(stores, tmp_path_factory) -> Path:
    """Another harvested copy of tms-5-2, for the one test that re-harvests and removes it."""
    path = tmp_path_factory.mktemp("serve-replaceable") / "tms.zarr"
    shutil.copytree(stores["tms-5-2"], path)
    _harvest(path, top_k=6)
    return path


def _harvest(path: Path, top_k: int) -> None:
    store = FactorStore.open(path)
    dec = load_decomposition(store)
    s = HarvestSettings(threshold=dec.config.ci_alive_threshold, shard_size=128, top_k=top_k)
    write_harvest(path, harvest(dec, harvest_inputs(store, dec, s, inputs=256), s))


@pytest.fixture(scope="module")
def app(server, stores, harvested_toy, harvested_text_store, replaceable) -> str:
    from ray import serve

    from services.serving.app import build_app

    args = {
        "stores": [
            f"tms={harvested_toy}",
            f"bare={stores['tms-5-2-id']}",
            f"smol={harvested_text_store[0]}",
            f"fresh={replaceable}",
        ],
        "replica_cpus": 0.5,
        "limits": {"max_page_size": 50},
    }
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}", blocking=False)
    yield server
    serve.delete(APP)


@pytest.fixture
def client(app):
    with Client(app, application=APP) as c:
        yield c


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_pages_cover_every_component_once_in_frequency_order(client, harvested_toy):
    rows, token, pages = [], "", 0
    while True:
        page = client.list_components("tms", page_size=7, page_token=token)
        rows += page.components
        token, pages = page.next_page_token, pages + 1
        if not token:
            break
    table = HarvestReader.open(FactorStore.open(harvested_toy)).table()
    assert pages == math.ceil(len(table) / 7) and page.total_size == len(table) == 40
    expected = sorted(table, key=lambda r: (-r.firing_frequency, r.module, r.component))
    assert [(r.module, r.component) for r in rows] == [(r.module, r.component) for r in expected]
    assert [r.firing_count for r in rows] == [r.firing_count for r in expected]
    by_mean = client.list_components("tms", module="linear2", order="mean_ci", page_size=50)
    means = [r.mean_ci_when_firing for r in by_mean.components]
    fired = [m for m in means if not math.isnan(m)]
    assert {r.module for r in by_mean.components} == {"linear2"} and len(means) == 20
    assert fired == sorted(fired, reverse=True) and means[: len(fired)] == fired  # NaN last


def _harvest_part(summary) -> dict:
    """A served summary as JSON without the interpretation (which the harvest does not hold)."""
    data = jsonable(summary)
    data["stats"].pop("interpretation")
    return data


def test_summary_is_the_stored_harvest(client, harvested_toy):
    got = client.get_component_summary("tms", "linear1", 3)
    want = HarvestReader.open(FactorStore.open(harvested_toy)).summary("linear1", 3)
    assert _harvest_part(got) == jsonable(want)
    assert got.stats.interpretation.token_summary == ""  # a toy: no token statistics
    assert got.stats.interpretation.status == "" and not got.stats.interpretation.label
    assert got.stats.firing_frequency == want.stats.firing_count / 256
    assert len(got.top_examples) == 6 and got.histogram.sum() == 256


def test_text_summary_and_contexts_come_from_the_harvest(client, harvested_text_store):
    path, _ = harvested_text_store
    want = HarvestReader.open(FactorStore.open(path)).summary(TEXT_MODULE, 1)
    got = client.get_component_summary("smol", TEXT_MODULE, 1)
    assert _harvest_part(got) == jsonable(want)
    summaries = harvest_token_summaries(HarvestReader.open(FactorStore.open(path)), TEXT_MODULE)
    assert got.stats.interpretation.token_summary == summaries[1] != ""
    assert got.top_examples[0].token and (got.logits_up or got.stats.firing_count == 0)
    contexts = client.get_component_contexts("smol", TEXT_MODULE, 1, k=3)
    assert contexts.from_harvest and contexts.n_windows == 10
    assert [(c.window, c.position, c.token) for c in contexts.contexts] == [
        (e.input, e.position, e.token) for e in want.top_examples[:3]
    ]


@pytest.mark.parametrize(
    "call, code, message",
    [
        (
            lambda c: c.get_component_summary("tms", "linear1", 20),
            grpc.StatusCode.INVALID_ARGUMENT,
            "component 20 is out of range for module 'linear1' of 'tms': it has C = 20",
        ),
        (
            lambda c: c.get_component_summary("tms", "linear9", 0),
            grpc.StatusCode.NOT_FOUND,
            "module 'linear9' is not decomposed in 'tms'",
        ),
        (
            lambda c: c.get_component_summary("bare", "linear1", 0),
            grpc.StatusCode.FAILED_PRECONDITION,
            "has no harvest: run `spd harvest",
        ),
        (
            lambda c: c.list_components("bare"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "has no harvest: run `spd harvest",
        ),
        (
            lambda c: c.list_components("tms", page_token="not-a-token"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token is not a token this server gave",
        ),
        (
            lambda c: c.list_components(
                "tms",
                order="mean_ci",
                page_token=c.list_components("tms", page_size=2).next_page_token,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token belongs to another listing",
        ),
        (
            lambda c: c.list_components("tms", page_size=51),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "page_size 51 exceeds this server's limit of 50",
        ),
    ],
)
def test_bad_requests_get_a_precise_status(client, call, code, message):
    got, details = _code(lambda: call(client))
    assert got == code and message in details, details


def test_a_running_server_sees_a_new_harvest_and_refuses_a_removed_one(client, replaceable):
    assert len(client.get_component_summary("fresh", "linear1", 3).top_examples) == 6
    _harvest(replaceable, top_k=3)
    want = HarvestReader.open(FactorStore.open(replaceable)).summary("linear1", 3)
    got = client.get_component_summary("fresh", "linear1", 3)
    assert len(got.top_examples) == 3 and _harvest_part(got) == jsonable(want)
    shutil.rmtree(replaceable / "harvest")
    for call in (
        lambda: client.get_component_summary("fresh", "linear1", 3),
        lambda: client.list_components("fresh"),
    ):
        code, details = _code(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "has no harvest" in details


def test_concurrent_harvest_and_importance_calls_get_their_lone_answers(app, client):
    """Harvest calls (answered on the replica's thread pool) interleaved with batched
    ComputeImportances (on its event loop): each answer equals the same call made alone."""
    x = np.random.default_rng(0).uniform(-1, 1, (3, 5)).astype(np.float32)
    calls = [
        ("get_component_summary", "tms", m, c) for m in ("linear1", "linear2") for c in range(20)
    ]
    calls += [("list_components", "tms", m) for m in (None, "linear1", "linear2")]
    calls += [("get_component_contexts", "smol", TEXT_MODULE, c) for c in range(4)]
    calls += [("compute_importances", "tms", x)] * 12

    def alone(call):
        return getattr(client, call[0])(*call[1:])

    async def together():
        async with AsyncClient(app, application=APP) as c:
            return await asyncio.gather(*(getattr(c, n)(*a) for n, *a in calls * 2))

    want = [alone(call) for call in calls] * 2
    for call, got, expected in zip(calls * 2, asyncio.run(together()), want, strict=True):
        if call[0] == "compute_importances":  # batched forwards may round differently
            assert got.keys() == expected.keys()
            for m in got:
                np.testing.assert_allclose(got[m].values, expected[m].values, atol=1e-6)
        elif call[0] == "get_component_contexts":
            assert got == expected and got.from_harvest, call
        else:
            assert jsonable(got) == jsonable(expected), call


def test_async_client_answers_the_same(app, client):
    async def both():
        async with AsyncClient(app, application=APP) as c:
            return await c.list_components("tms", page_size=5), await c.get_component_summary(
                "tms", "linear2", 0
            )

    page, summary = asyncio.run(both())
    assert jsonable(page) == jsonable(client.list_components("tms", page_size=5))
    assert jsonable(summary) == jsonable(client.get_component_summary("tms", "linear2", 0))


def test_query_commands_and_inspect_print_the_same(app, harvested_toy, capsys):
    base = ["query", "--address", app, "--application", APP]
    assert main([*base, "--json", "summary", "tms", "linear1:3"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(harvested_toy), "--json", "--component", "linear1:3"]) == 0
    inspected = json.loads(capsys.readouterr().out)["component"]
    assert inspected.pop("from_harvest") is True and inspected == served
    assert main([*base, "summary", "tms", "linear1:3"]) == 0
    table = capsys.readouterr().out
    assert f"component 3 of linear1: fires on {served['stats']['firing_count']:,} of 256" in table
    assert (
        main([*base, "list-components", "tms", "--module", "linear1", "--all", "--page-size", "8"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("module  component  firing_frequency") and len(lines) == 21
    assert main([*base, "summary", "tms", "linear1:99"]) == 2
    assert "INVALID_ARGUMENT: component 99 is out of range" in capsys.readouterr().err
