"""Harvest without Ray: the exact merges pinned on hand cases, fast paths equal to plain ones, a
whole harvest equal to a brute-force computation (a toy and a text model), and the `harvest/`
group in the store: its schema, its manifest, and that it never damages the decomposition."""

from __future__ import annotations

import shutil

import pytest
import torch
import zarr

from spd_core.harvest import (
    HarvestReader,
    HarvestSettings,
    NoHarvestError,
    harvest,
    harvest_inputs,
)
from spd_core.harvest import accumulator as acc
from spd_core.harvest.accumulator import HarvestPartial, coactivation_counts
from spd_core.harvest.topk import EMPTY_INDEX, batch_top, empty_top, merge_top
from spd_core.harvest.writer import write_harvest
from spd_core.loading import load_decomposition
from spd_core.store import FactorStore, StoreError, verify_store
from spd_core.store.layout import SCHEMA_VERSION
from tests.harvest_reference import assert_same_harvest, brute_force

SETTINGS = {"shard_size": 64, "batch_size": 16, "top_k": 5, "partners": 3, "top_tokens": 4}


def _settings(store: FactorStore, **over) -> HarvestSettings:
    threshold = store.config["ci_alive_threshold"]
    return HarvestSettings(threshold=threshold, **{**SETTINGS, **over})


# ---------------------------------------------------------------------------- exact merges
def test_top_k_is_the_top_of_all_examples_with_ties_to_the_earliest_whatever_the_split():
    ci = torch.tensor([[0.5], [0.9], [0.5], [0.2], [0.9], [0.5]])  # one component, 6 examples
    # by hand: 0.9 at 1 and 4, then 0.5 at 0 (earliest of 0, 2, 5)
    want_values, want_index = [0.9, 0.9, 0.5], [1, 4, 0]
    for cut in range(1, 6):
        values, index = empty_top(1, 3)
        for start, stop in ((0, cut), (cut, 6)):
            v, i = batch_top(ci[start:stop].t(), 3, start)
            values, index = merge_top(values, index, v, i)
        assert values[0].tolist() == pytest.approx(want_values), cut
        assert index[0].tolist() == want_index, cut
    values, index = merge_top(*empty_top(1, 3), *batch_top(ci[:2].t(), 3, 0))
    assert index[0].tolist() == [1, 0, EMPTY_INDEX]  # unfilled slots sort last


def test_histogram_counts_and_sums_pinned_by_hand():
    s = HarvestSettings(threshold=0.25, n_bins=4, top_k=2)
    p = HarvestPartial(["m"], [2], s)
    # component 0: CI -0.1, 0.3, 1.0 ; component 1: 0.0, 0.6, 0.24
    p.update({"m": torch.tensor([[-0.1, 0.0], [0.3, 0.6], [1.0, 0.24]])}, 0, None)
    assert p.histogram.tolist() == [[1, 1, 0, 1], [2, 0, 1, 0]]  # bins of 0.25; 1.0 in the last
    assert p.firing_count.tolist() == [2, 1]  # CI > 0.25
    assert p.ci_sum.tolist() == pytest.approx([1.3, 0.6])
    assert p.coactivation.tolist() == [[2, 1], [1, 1]]  # both fire at position 1


def test_coactivation_fast_path_equals_the_float_matmul():
    fires = torch.rand(300, 37, generator=torch.Generator().manual_seed(0)) < 0.3
    f = fires.double()
    assert torch.equal(coactivation_counts(fires), (f.t() @ f).long())


def test_token_counts_dense_and_sparse_paths_agree(monkeypatch):
    s = HarvestSettings(threshold=0.5, top_k=2)
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.rand(4, 6, 3, generator=gen), torch.randint(0, 9, (4, 6), generator=gen))
        for _ in range(3)
    ]

    def run() -> tuple[list, list]:
        p = HarvestPartial(["m"], [3], s)
        for i, (ci, tok) in enumerate(batches):
            p.update({"m": ci}, 4 * i, tok)
        p.flush_tokens()
        p.token_pairs.compact()
        return p.token_pairs.keys.tolist(), p.token_pairs.counts.tolist()

    dense = run()
    monkeypatch.setattr(acc, "_DENSE_PAIRS_MAX", 0)
    assert run() == dense
    ci = torch.cat([c for c, _ in batches]).reshape(-1, 3)
    tok = torch.cat([t for _, t in batches]).reshape(-1)
    plain = sorted(
        ((c << acc.TOKEN_BITS) | t, int(((ci[:, c] > 0.5) & (tok == t)).sum()))
        for c in range(3)
        for t in range(9)
    )
    assert dense == ([k for k, n in plain if n], [n for _, n in plain if n])


# ------------------------------------------------------------------- whole harvests in-process
def test_toy_harvest_equals_brute_force(harvest_toy_store):
    store = FactorStore.open(harvest_toy_store)
    dec = load_decomposition(store)
    s = _settings(store)
    inputs = harvest_inputs(store, dec, s, inputs=200)  # 4 shards, the last one short
    assert inputs.kind == "vectors" and inputs.n_inputs == 200
    result = harvest(dec, inputs, s)
    expected = brute_force(dec, inputs.inputs, s, None, causal=False)
    assert_same_harvest(result.modules, expected)
    assert result.attrs["n_positions"] == 200
    count = result.modules["linear1"]["firing_count"]
    assert 0 < count.max() < 200  # some component fires on some inputs, not all


def test_text_harvest_equals_brute_force_with_contexts_tokens_and_logit_effects(
    harvested_text_store,
):
    path, s = harvested_text_store
    store = FactorStore.open(path)
    dec = load_decomposition(store)
    inputs = harvest_inputs(store, dec, s, tokens=8 * 10)  # 10 windows of 8 tokens
    assert inputs.kind == "text" and inputs.inputs.shape == (10, 8)
    reader = HarvestReader.open(store)
    assert reader.attrs["inputs_sha256"] == inputs.fingerprint()
    group = zarr.open_group(path / "harvest/modules", mode="r")
    stored = {m: {k: a[...] for k, a in group[m].arrays()} for m in reader.modules}
    expected = brute_force(dec, inputs.inputs, s, dec.tokenizer.decode, causal=True)
    assert_same_harvest(stored, expected)
    arrays = stored["model.layers.3.mlp.down_proj"]
    assert (arrays["logit_up_id"] >= 0).any()  # some component was ablated on its examples
    assert (arrays["tokens_by_recall_id"] >= 0).any()


# ------------------------------------------------------------------------------- the store
def test_stored_harvest_reads_back_and_is_covered_by_its_own_manifest(harvest_toy_store, tmp_path):
    path = tmp_path / "tms.zarr"
    shutil.copytree(harvest_toy_store, path)
    store = FactorStore.open(path)
    dec = load_decomposition(store)
    s = _settings(store)
    result = harvest(dec, harvest_inputs(store, dec, s, inputs=128), s)
    before = verify_store(path)
    with pytest.raises(NoHarvestError, match="run `spd harvest"):
        HarvestReader.open(store)
    write_harvest(path, result)
    report = verify_store(path)
    assert (
        report.ok
        and report.verified
        and report.harvest == "complete"
        and report.schema == SCHEMA_VERSION
    )
    assert report.files_checked > before.files_checked  # the harvest's files are checked too
    group = zarr.open_group(path / "harvest/modules/linear1", mode="r")
    assert group["top_ci"].metadata.dimension_names == ("component", "rank")
    assert "description" in group["firing_frequency"].attrs
    reader = HarvestReader.open(FactorStore.open(path))
    summary = reader.summary("linear1", 2)
    assert summary.stats.firing_count == result.modules["linear1"]["firing_count"][2]
    with pytest.raises(IndexError, match=r"C = 20, so 0..19"):
        reader.summary("linear1", 20)
    # a chunk of the harvest deleted: the harvest is refused, the decomposition still reads
    (path / "harvest/modules/linear1/firing_count/c/0").unlink()
    with pytest.raises(StoreError, match="missing chunk"):
        HarvestReader.open(FactorStore.open(path))
    assert not verify_store(path).ok
    assert load_decomposition(path).model.C == dec.model.C


def test_a_half_written_harvest_is_refused_and_a_schema_2_store_reads_and_is_raised(
    harvest_toy_store, tmp_path
):
    path = tmp_path / "tms.zarr"
    shutil.copytree(harvest_toy_store, path)
    root = zarr.open_group(path, mode="r+")
    root.attrs["spd_schema"] = 2  # what spd wrote before harvests (the root is not in the manifest)
    store = FactorStore.open(path)
    assert store.schema_version == 2 and verify_store(path).ok
    dec = load_decomposition(store)
    s = _settings(store)
    write_harvest(path, harvest(dec, harvest_inputs(store, dec, s, inputs=64), s))
    assert FactorStore.open(path).schema_version == 3
    root["harvest"].attrs["complete"] = False  # as a crash before the last write leaves it
    with pytest.raises(NoHarvestError, match="incomplete"):
        HarvestReader.open(FactorStore.open(path))
    report = verify_store(path)
    assert report.ok and report.harvest == "incomplete"  # the decomposition is whole
