"""Tests of the factor store (Zarr v3) against real stores on disk."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import zarr

from spd_core.store import SCHEMA_VERSION, FactorStore, ModuleLayout, StoreError, StoreWriter

MODULES = {
    "layers.0.mlp_in": ModuleLayout(kind="linear", C=10, d_in=4, d_out=6),
    "h.1.mlp.c_fc": ModuleLayout(kind="conv1d", C=7, d_in=3, d_out=5),
}
CONFIG = {"C": 10, "lr": 1e-3, "loss": {"faithfulness": 1.0}}
TARGET_SPEC = {"kind": "toy", "name": "tms_5_2"}


def _factors(layout: ModuleLayout, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((layout.C, layout.d_out)).astype(np.float32)
    V = rng.standard_normal((layout.C, layout.d_in)).astype(np.float32)
    return U, V


def _complete_store(path: Path, chunk_c: int | dict[str, int] | None = None) -> StoreWriter:
    writer = StoreWriter.create(
        path, modules=MODULES, config=CONFIG, target_spec=TARGET_SPEC, chunk_c=chunk_c
    )
    for i, (name, layout) in enumerate(MODULES.items()):
        U, V = _factors(layout, i)
        writer.write_factor_rows(name, "U", 0, U)
        writer.write_factor_rows(name, "V", 0, V)
    writer.mark_complete()
    return writer


def test_round_trip_of_everything(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "run.zarr"
    writer = StoreWriter.create(
        str(path),
        modules=MODULES,
        config=CONFIG,
        target_spec=TARGET_SPEC,
        chunk_c={"layers.0.mlp_in": 4},
        code_version="spd test-1",
        attrs={"run_id": "abc"},
    )
    U0, V0 = _factors(MODULES["layers.0.mlp_in"], 0)
    writer.write_factor_rows("layers.0.mlp_in", "U", 0, torch.from_numpy(U0).requires_grad_())
    writer.write_factor_rows("layers.0.mlp_in", "V", 0, V0)
    U1, V1 = _factors(MODULES["h.1.mlp.c_fc"], 1)
    writer.write_factor_rows("h.1.mlp.c_fc", "U", 0, U1)
    writer.write_factor_rows("h.1.mlp.c_fc", "V", 0, torch.from_numpy(V1))
    ci = {
        "mlp.0.weight": np.arange(12, dtype=np.float64).reshape(3, 4),
        "mlp.0.bias": torch.ones(3),
        "odd/name": np.zeros(2),
        "__dunder": np.full((1,), 2.0),
        "scalar": np.float32(1.5),
    }
    writer.write_ci_fn("layers.0.mlp_in", ci, fn_type="mlp", hidden_dims=[3])
    target = {"linear1.weight": torch.randn(6, 4), "buf.count": np.array([1, 2], np.int64)}
    writer.write_target(target)
    writer.append_curves(0, {"loss": 1.0, "l0": 5.0})
    writer.append_curves(10, {"loss": 0.5, "l0": 4.0})
    writer.update_metrics({"mean_l0": np.float32(4.5)})
    writer.update_metrics({"recon_mse": 0.01, "bad": float("nan")})
    writer.mark_complete()

    store = FactorStore.open(path)
    assert store.complete and store.schema_version == SCHEMA_VERSION
    assert store.config == CONFIG and store.target_spec == TARGET_SPEC
    assert store.metrics == {"mean_l0": 4.5, "recon_mse": 0.01, "bad": None}
    assert store.code_version == "spd test-1" and store.attrs["run_id"] == "abc"
    assert store.modules == MODULES
    np.testing.assert_array_equal(store.U("layers.0.mlp_in"), U0)
    np.testing.assert_array_equal(store.V("layers.0.mlp_in"), V0)
    np.testing.assert_array_equal(store.U("h.1.mlp.c_fc"), U1)
    np.testing.assert_array_equal(store.V("h.1.mlp.c_fc"), V1)
    np.testing.assert_array_equal(store.U("layers.0.mlp_in", [7, 2, 2]), U0[[7, 2, 2]])
    np.testing.assert_array_equal(store.V("layers.0.mlp_in", slice(3, 9)), V0[3:9])
    with pytest.raises(IndexError):
        store.U("layers.0.mlp_in", [10])

    params = store.ci_fn_params("layers.0.mlp_in")
    assert list(params) == list(ci)
    for name, value in ci.items():
        expected = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        assert params[name].dtype == np.float32 and params[name].shape == expected.shape
        np.testing.assert_array_equal(params[name], expected.astype(np.float32))
    ci_attrs = zarr.open_group(path, mode="r")["modules/layers.0.mlp_in/ci_fn"].attrs
    assert (ci_attrs["type"], list(ci_attrs["hidden_dims"])) == ("mlp", [3])
    with pytest.raises(StoreError, match="no causal-importance function"):
        store.ci_fn_params("h.1.mlp.c_fc")

    state = store.target_state()
    assert state is not None and list(state) == list(target)
    np.testing.assert_array_equal(state["linear1.weight"], target["linear1.weight"].numpy())
    assert state["buf.count"].dtype == np.int64

    curves = store.curves()
    np.testing.assert_array_equal(curves["step"], [0, 10])
    np.testing.assert_array_equal(curves["loss"], [1.0, 0.5])
    assert curves["step"].dtype == np.int64 and curves["l0"].dtype == np.float64


def test_layout_is_readable_with_plain_zarr(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    _complete_store(path, chunk_c=4)
    root = zarr.open_group(path, mode="r")
    assert root.attrs["spd_schema"] == SCHEMA_VERSION and root.attrs["complete"] is True
    assert root.attrs["config"] == CONFIG and root.attrs["target_spec"] == TARGET_SPEC
    module = root["modules/layers.0.mlp_in"]
    assert dict(module.attrs) == {"kind": "linear", "C": 10, "d_in": 4, "d_out": 6}
    U = zarr.open_array(path / "modules" / "layers.0.mlp_in" / "U", mode="r")
    V = zarr.open_array(path / "modules" / "layers.0.mlp_in" / "V", mode="r")
    assert U.metadata.dimension_names == ("component", "d_out")
    assert V.metadata.dimension_names == ("component", "d_in")
    assert U.dtype == np.float32 and U.shape == (10, 6) and V.shape == (10, 4)
    assert "W ≈ U^T V" in U.attrs["description"]
    step = zarr.open_array(path / "training" / "step", mode="r")
    assert step.metadata.dimension_names == ("record",) and step.dtype == np.int64
    assert isinstance(root["modules/layers.0.mlp_in/ci_fn"], zarr.Group)


def test_chunking_along_C(tmp_path: Path) -> None:
    _complete_store(tmp_path / "a.zarr", chunk_c=4)
    root = zarr.open_group(tmp_path / "a.zarr", mode="r")
    assert root["modules/layers.0.mlp_in/U"].chunks == (4, 6)
    assert root["modules/layers.0.mlp_in/V"].chunks == (4, 4)
    assert root["modules/layers.0.mlp_in/U"].nchunks_initialized == 3  # rows 0-3, 4-7, 8-9
    _complete_store(tmp_path / "b.zarr", chunk_c=None)
    root = zarr.open_group(tmp_path / "b.zarr", mode="r")
    assert root["modules/h.1.mlp.c_fc/U"].chunks == (7, 5)
    assert root["modules/h.1.mlp.c_fc/V"].chunks == (7, 3)


def test_row_writes_must_be_chunk_aligned(tmp_path: Path) -> None:
    writer = StoreWriter.create(
        tmp_path / "s.zarr", modules=MODULES, config={}, target_spec={}, chunk_c=4
    )
    rows = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="aligned"):
        writer.write_factor_rows("layers.0.mlp_in", "U", 2, rows)
    with pytest.raises(ValueError, match="aligned"):
        writer.write_factor_rows("layers.0.mlp_in", "U", 0, rows[:3])
    writer.write_factor_rows("layers.0.mlp_in", "U", 8, rows[:2])  # last, partial chunk: ok
    with pytest.raises(ValueError, match="outside"):
        writer.write_factor_rows("layers.0.mlp_in", "U", 8, rows)
    with pytest.raises(ValueError, match="shape"):
        writer.write_factor_rows("layers.0.mlp_in", "U", 0, np.ones((4, 5)))


def test_mark_complete_refuses_unwritten_factors(tmp_path: Path) -> None:
    writer = StoreWriter.create(
        tmp_path / "s.zarr", modules=MODULES, config={}, target_spec={}, chunk_c=4
    )
    U, V = _factors(MODULES["layers.0.mlp_in"], 0)
    writer.write_factor_rows("layers.0.mlp_in", "U", 0, U)
    writer.write_factor_rows("layers.0.mlp_in", "V", 0, V)
    with pytest.raises(StoreError, match=r"h\.1\.mlp\.c_fc/U"):
        writer.mark_complete()
    assert zarr.open_group(tmp_path / "s.zarr", mode="r").attrs["complete"] is False


def test_unknown_module_lists_available(tmp_path: Path) -> None:
    _complete_store(tmp_path / "s.zarr")
    store = FactorStore.open(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match=r"no module 'nope'.*layers\.0\.mlp_in"):
        store.U("nope")
    writer = StoreWriter.open_existing(tmp_path / "s.zarr", allow_complete=True)
    with pytest.raises(StoreError, match=r"h\.1\.mlp\.c_fc"):
        writer.write_factor_rows("nope", "U", 0, np.zeros((1, 1)))


def test_open_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        FactorStore.open(tmp_path / "missing.zarr")


def test_open_non_store_dir(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="not a factor store"):
        FactorStore.open(tmp_path / "plain")
    zarr.open_group(tmp_path / "other.zarr", mode="w")  # a Zarr group, but not ours
    with pytest.raises(StoreError, match="spd_schema"):
        FactorStore.open(tmp_path / "other.zarr")


def test_open_incomplete_store(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, modules=MODULES, config={}, target_spec={})
    U, V = _factors(MODULES["layers.0.mlp_in"], 0)
    writer.write_factor_rows("layers.0.mlp_in", "U", 0, U)
    writer.write_factor_rows("layers.0.mlp_in", "V", 0, V)
    with pytest.raises(StoreError, match="incomplete: the run that wrote it did not finish"):
        FactorStore.open(path)
    store = FactorStore.open(path, allow_incomplete=True)
    assert not store.complete
    assert np.isnan(store.U("h.1.mlp.c_fc")).all()  # never written: NaN, not plausible zeros


def test_open_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _complete_store(path)
    zarr.open_group(path, mode="r+").attrs["spd_schema"] = SCHEMA_VERSION + 1
    newer = rf"written by a newer spd \(schema {SCHEMA_VERSION + 1}\); upgrade"
    with pytest.raises(StoreError, match=newer):
        FactorStore.open(path)
    with pytest.raises(StoreError, match="newer spd"):
        StoreWriter.open_existing(path)


@pytest.mark.parametrize("node", ["", "modules/layers.0.mlp_in", "modules/h.1.mlp.c_fc/V"])
def test_open_corrupt_metadata(tmp_path: Path, node: str) -> None:
    path = tmp_path / "s.zarr"
    _complete_store(path)
    meta = path / node / "zarr.json"
    meta.write_text("{not json at all")
    with pytest.raises(StoreError, match="corrupt") as info:
        FactorStore.open(path)
    assert str(meta) in str(info.value)


def test_open_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _complete_store(path)
    zarr.open_group(path / "modules" / "h.1.mlp.c_fc", mode="r+").attrs["C"] = 8
    with pytest.raises(StoreError, match=r"h\.1\.mlp\.c_fc/U has shape \(7, 5\).*\(8, 5\)"):
        FactorStore.open(path)


def test_create_refuses_existing_store_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _complete_store(path)
    with pytest.raises(StoreError, match=r"complete factor store already exists.*overwrite=True"):
        StoreWriter.create(path, modules=MODULES, config={}, target_spec={})
    assert FactorStore.open(path).config == CONFIG  # untouched
    one = {"linear1": ModuleLayout(kind="embedding", C=2, d_in=3, d_out=4)}
    StoreWriter.create(path, modules=one, config={"new": 1}, target_spec={}, overwrite=True)
    store = FactorStore.open(path, allow_incomplete=True)
    assert list(store.modules) == ["linear1"] and store.config == {"new": 1}
    assert not store.complete


def test_create_never_deletes_a_non_store_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(StoreError, match="not a Zarr store"):
        StoreWriter.create(tmp_path, modules=MODULES, config={}, target_spec={}, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_curves_with_new_name_later_are_nan_filled(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, modules=MODULES, config={}, target_spec={})
    writer.append_curves(1, {"loss": 3.0})
    writer.append_curves(2, {"loss": 2.0})
    writer.append_curves(3, {"loss": 1.0, "l0/layers.0": 9.0})
    writer.append_curves(4, {"l0/layers.0": 8.0})
    curves = FactorStore.open(path, allow_incomplete=True).curves()
    assert set(curves) == {"step", "loss", "l0/layers.0"}
    np.testing.assert_array_equal(curves["step"], [1, 2, 3, 4])
    np.testing.assert_array_equal(curves["l0/layers.0"], [np.nan, np.nan, 9.0, 8.0])
    np.testing.assert_array_equal(curves["loss"], [3.0, 2.0, 1.0, np.nan])
    # a second writer process resumes appending where the first stopped
    StoreWriter.open_existing(path).append_curves(5, {"loss": 0.5})
    curves = FactorStore.open(path, allow_incomplete=True).curves()
    np.testing.assert_array_equal(curves["loss"], [3.0, 2.0, 1.0, np.nan, 0.5])
    assert len(curves["l0/layers.0"]) == 5 and np.isnan(curves["l0/layers.0"][4])


def _expected_rows(module: str, name: str) -> np.ndarray:
    layout = MODULES[module]
    width = layout.d_out if name == "U" else layout.d_in
    rows = np.arange(layout.C, dtype=np.float32)[:, None] * 100 + np.arange(width)
    return rows + (0.5 if name == "V" else 0.0)


def _parallel_worker(path: str, chunk_indices: list[int], chunk_c: int) -> None:
    writer = StoreWriter.open_existing(path)
    for module, layout in MODULES.items():
        for name in ("U", "V"):
            full = _expected_rows(module, name)
            for chunk in chunk_indices:
                start = chunk * chunk_c
                if start < layout.C:
                    writer.write_factor_rows(module, name, start, full[start : start + chunk_c])


def test_parallel_writers_on_disjoint_chunks(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    chunk_c = 2
    StoreWriter.create(path, modules=MODULES, config={}, target_spec={}, chunk_c=chunk_c)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_parallel_worker, args=(str(path), [0, 2, 4], chunk_c)),
        ctx.Process(target=_parallel_worker, args=(str(path), [1, 3], chunk_c)),
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    writer = StoreWriter.open_existing(path)
    writer.mark_complete()  # every chunk of every factor is present
    store = FactorStore.open(path)
    for module in MODULES:
        np.testing.assert_array_equal(store.U(module), _expected_rows(module, "U"))
        np.testing.assert_array_equal(store.V(module), _expected_rows(module, "V"))


def test_config_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"config\.bad"):
        StoreWriter.create(
            tmp_path / "s.zarr", modules=MODULES, config={"bad": object()}, target_spec={}
        )
    with pytest.raises(ValueError, match="reserved"):
        StoreWriter.create(
            tmp_path / "s.zarr", modules=MODULES, config={}, target_spec={}, attrs={"complete": 1}
        )
    # strict JSON on disk: other tools parse zarr.json with ordinary JSON readers
    writer = StoreWriter.create(tmp_path / "s.zarr", modules=MODULES, config={}, target_spec={})
    writer.update_metrics({"x": float("inf")})
    meta = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
    assert meta["attributes"]["metrics"] == {"x": None}
