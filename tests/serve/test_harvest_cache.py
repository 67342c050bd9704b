"""The served harvest cache (services/serving/harvest_cache.py) on real stores: its answers equal
the uncached path's (a fresh HarvestReader on every call, rows sorted per call), a harvest is
read once, a new harvest is seen by the next call, and a removed, incomplete or damaged harvest
is still refused; threads sharing one cache get the same answers."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import grpc
import pytest
import zarr

from services.commands.component_summary import jsonable
from services.serving.catalog import Catalog
from services.serving.component_stats import component_summary, harvest_contexts, list_components
from services.serving.errors import RequestError
from services.serving.limits import Limits
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb
from spd_core.harvest import HarvestReader, HarvestSettings, harvest, harvest_inputs, write_harvest
from spd_core.loading import load_decomposition
from spd_core.store import FactorStore

LIMITS = Limits(max_page_size=50)
ORDERS = (hpb.COMPONENT_ORDER_FREQUENCY, hpb.COMPONENT_ORDER_MEAN_CI)


def _harvest(path: Path, top_k: int) -> None:
    store = FactorStore.open(path)
    dec = load_decomposition(store)
    s = HarvestSettings(threshold=dec.config.ci_alive_threshold, shard_size=64, top_k=top_k)
    write_harvest(path, harvest(dec, harvest_inputs(store, dec, s, inputs=128), s))


@pytest.fixture
def harvested(harvest_toy_store, tmp_path) -> Path:
    """A copy of the session's TMS store (two modules of C = 20) with a top-6 harvest."""
    path = tmp_path / "tms.zarr"
    shutil.copytree(harvest_toy_store, path)
    _harvest(path, top_k=6)
    return path


def _pages(catalog: Catalog, module: str | None, order: int, size: int) -> list:
    pages, token = [], ""
    while True:
        request = hpb.ListComponentsRequest(
            decomposition="tms", module=module, order=order, page_size=size, page_token=token
        )
        page = list_components(catalog, LIMITS, request)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def _summary(catalog: Catalog, module: str, component: int) -> hpb.GetComponentSummaryResponse:
    request = hpb.GetComponentSummaryRequest(
        decomposition="tms", module=module, component=component
    )
    return component_summary(catalog, request)


def _refusal(call) -> RequestError:
    with pytest.raises(RequestError) as info:
        call()
    return info.value


def test_cached_answers_equal_the_uncached_path(harvested):
    cached = Catalog({"tms": str(harvested)})
    uncached = Catalog({"tms": str(harvested)}, harvest_cache=False)
    store = FactorStore.open(harvested)
    for module in (None, *store.modules):
        for order in ORDERS:
            for size in (1, 7, 50):
                want = _pages(uncached, module, order, size)
                assert _pages(cached, module, order, size) == want, (module, order, size)
    for module, layout in store.modules.items():
        for c in range(layout.C):
            assert _summary(cached, module, c) == _summary(uncached, module, c), (module, c)
            request = pb.GetComponentContextsRequest(
                decomposition="tms", module=module, component=c
            )
            assert harvest_contexts(cached, request, 4) == harvest_contexts(uncached, request, 4)


def test_a_loaded_reader_reads_what_the_files_hold(harvested):
    on_demand = HarvestReader.open(FactorStore.open(harvested))
    loaded = HarvestReader.open(FactorStore.open(harvested)).load()
    assert jsonable(loaded.table()) == jsonable(on_demand.table()) and len(loaded.table()) == 40
    assert jsonable(loaded.summary("linear2", 5)) == jsonable(on_demand.summary("linear2", 5))
    assert len(loaded.summary("linear2", 5).top_examples) == 6


def test_a_kept_harvest_is_opened_once_and_a_new_one_is_seen_next_call(harvested):
    catalog = Catalog({"tms": str(harvested)})
    first = catalog.harvest("tms")
    assert catalog.harvest("tms") is first  # kept: not reopened
    assert len(_summary(catalog, "linear1", 3).top_examples) == 6
    _harvest(harvested, top_k=3)
    assert catalog.harvest("tms") is not first
    fresh = HarvestReader.open(FactorStore.open(harvested))
    got = _summary(catalog, "linear1", 3)
    assert len(got.top_examples) == 3
    assert [e.input for e in got.top_examples] == [
        e.input for e in fresh.summary("linear1", 3).top_examples
    ]
    assert _pages(catalog, None, ORDERS[0], 50)[0].total_size == 40


def test_a_removed_harvest_is_refused_at_the_next_call(harvested):
    catalog = Catalog({"tms": str(harvested)})
    _summary(catalog, "linear1", 0)
    shutil.rmtree(harvested / "harvest")
    err = _refusal(lambda: _summary(catalog, "linear1", 0))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "has no harvest" in err.message
    request = pb.GetComponentContextsRequest(decomposition="tms", module="linear1", component=0)
    assert harvest_contexts(catalog, request, 4) is None  # contexts then search held-out text


def test_a_harvest_being_replaced_is_refused_as_incomplete(harvested):
    catalog = Catalog({"tms": str(harvested)})
    _pages(catalog, None, ORDERS[0], 10)
    zarr.open_group(harvested / "harvest", mode="r+").attrs["complete"] = False
    err = _refusal(lambda: _pages(catalog, None, ORDERS[0], 10))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "is incomplete" in err.message


def test_a_damaged_new_harvest_is_refused_and_stays_refused(harvested):
    catalog = Catalog({"tms": str(harvested)})
    _summary(catalog, "linear1", 0)
    _harvest(harvested, top_k=4)
    chunk = next(
        p for p in (harvested / "harvest/modules/linear1/top_ci/c").rglob("*") if p.is_file()
    )
    chunk.unlink()
    for _ in range(2):  # a refusal is not kept: checked again, refused again
        err = _refusal(lambda: _summary(catalog, "linear1", 0))
        assert err.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "linear1/top_ci" in err.message and "damaged" in err.message, err.message


def test_a_url_store_is_stamped_by_what_its_filesystem_says(harvested):
    fs = fsspec.filesystem("memory")
    fs.put(str(harvested), "/stamped/tms.zarr", recursive=True)
    try:
        catalog = Catalog({"tms": "memory://stamped/tms.zarr"})
        first = catalog.harvest("tms")
        assert catalog.harvest("tms") is first
        manifest = "/stamped/tms.zarr/harvest/integrity/zarr.json"
        fs.pipe(manifest, fs.cat(manifest) + b" ")  # a new manifest (same files): reopened
        assert catalog.harvest("tms") is not first
        fs.rm(manifest)
        err = _refusal(lambda: _summary(catalog, "linear1", 0))
        assert "has no integrity manifest" in err.message, err.message
    finally:
        fs.rm("/stamped", recursive=True)


def test_threads_sharing_the_cache_get_the_sequential_answers(harvested):
    catalog = Catalog({"tms": str(harvested)})
    calls = [("summary", m, c) for m in ("linear1", "linear2") for c in range(20)]
    calls += [("page", m, o) for m in (None, "linear1", "linear2") for o in ORDERS]

    def answer(call):
        kind, module, arg = call
        if kind == "summary":
            return _summary(catalog, module, arg)
        return _pages(catalog, module, arg, 7)

    want = [answer(c) for c in calls]
    catalog = Catalog({"tms": str(harvested)})  # a cold cache, opened by racing threads
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(answer, calls * 4))
    assert got == want * 4
