"""A complete store carries a manifest of every file; readers refuse a store whose listing
differs from it, `verify_store` names every damaged file, and stores from before still open."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr

from spd_core.loading import load_decomposition
from spd_core.store import (
    FactorStore,
    ModuleLayout,
    StoreError,
    StoreWriter,
    UnverifiableStoreWarning,
    verify_store,
)
from spd_core.store.manifest import digest

FIXTURE = Path(__file__).parent / "fixtures" / "stores" / "tms-5-2-schema1.zarr"
CHUNK = "modules/linear1/U/c/1/0"  # linear1's U (C=20) is written in chunks of 5 rows


def _rewrite(old: FactorStore, path: Path | str) -> None:
    """Write `old`'s decomposition into a new store of this schema (chunks of 5 components)."""
    ci = zarr.open_group(FIXTURE, mode="r")
    writer = StoreWriter.create(
        path,
        modules=old.modules,
        config=old.config,
        target_spec=old.target_spec,
        chunk_c=5,
    )
    for name in old.modules:
        writer.write_factor_rows(name, "U", 0, old.U(name))
        writer.write_factor_rows(name, "V", 0, old.V(name))
        attrs = ci[f"modules/{name}/ci_fn"].attrs
        writer.write_ci_fn(name, old.ci_fn_params(name), attrs["type"], attrs["hidden_dims"])
    writer.write_target(old.target_state() or {})
    writer.append_curves(0, {"loss": 1.0})
    writer.update_metrics(old.metrics)
    writer.mark_complete()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A complete toy decomposition of this schema (the schema-1 fixture, rewritten)."""
    path = tmp_path_factory.mktemp("integrity") / "tms.zarr"
    with pytest.warns(UnverifiableStoreWarning):
        old = FactorStore.open(FIXTURE)
    _rewrite(old, path)
    return path


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of `pristine` to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "tms.zarr"))


def _manifest(path: Path) -> dict:
    return json.loads((path / "integrity" / "zarr.json").read_text())["attributes"]


def _files_on_disk(path: Path) -> set[str]:
    return {
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and p.relative_to(path).parts[0] != "integrity"
    }


def test_manifest_records_every_file_of_every_group_with_its_size_and_sha256(store: Path):
    extra = zarr.open_group(store, mode="r+").create_group("global_ci_fn")  # a group added later
    extra.create_array("w", data=np.arange(6, dtype=np.float32).reshape(2, 3))
    StoreWriter.open_existing(store, allow_complete=True).mark_complete()

    manifest = _manifest(store)
    assert manifest["algorithm"] == "sha256"
    assert set(manifest["files"]) == _files_on_disk(store) - {"zarr.json"}
    assert {"global_ci_fn/w/c/0/0", "global_ci_fn/w/zarr.json", CHUNK} <= set(manifest["files"])
    assert "global_ci_fn/w" in manifest["arrays"] and "modules/linear1/U" in manifest["arrays"]
    for key, (size, sha256) in manifest["files"].items():
        data = (store / key).read_bytes()
        assert (size, sha256) == (len(data), digest(data)), key
    assert digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_good_store_verifies_and_opens(store: Path):
    report = verify_store(store)
    assert report.ok and report.verified and report.problems == []
    assert report.files_checked == len(_manifest(store)["files"])
    assert report.bytes_checked == sum(size for size, _ in _manifest(store)["files"].values())
    assert FactorStore.open(store, verify=True).integrity_note is None


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _garble(path: Path) -> None:
    path.write_text("{not json")


DAMAGE = {
    # name: (file, damage, kind, what, refused on open (a listing), found)
    "deleted chunk": (CHUNK, _delete, "missing", "chunk", True, "absent"),
    "truncated chunk": (CHUNK, _truncate, "size", "chunk", True, "{size_minus_7} bytes"),
    "flipped byte": (CHUNK, _flip, "checksum", "chunk", False, "sha256 {found_sha256}"),
    "corrupt metadata": (
        "modules/linear2/V/zarr.json",
        _garble,
        "metadata",
        "metadata",
        True,
        "9 bytes, sha256 {found_sha256}, not valid JSON",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_verify_names_each_damaged_file_and_readers_refuse_it(store: Path, case: str):
    key, damage, kind, what, on_open, found = DAMAGE[case]
    size, sha256 = _manifest(store)["files"][key]
    damage(store / key)
    found_sha256 = digest((store / key).read_bytes()) if (store / key).exists() else ""

    (problem,) = verify_store(store).problems
    node, _, sub = key.rpartition("/c/") if what == "chunk" else key.rpartition("/")
    sub = f"c/{sub}" if what == "chunk" else sub
    assert (problem.kind, problem.what, problem.node, problem.key) == (kind, what, node, sub)
    if kind != "checksum":
        assert str(size) in problem.expected
    assert found.format(size_minus_7=size - 7, found_sha256=found_sha256) in problem.found
    if kind != "size":
        assert sha256 in problem.expected
    line = problem.describe(store)
    assert f"{store}/{key}" in line

    with pytest.raises(StoreError) as refused:  # the full check, as `spd serve --verify` makes
        FactorStore.open(store, verify=True)
    assert line in str(refused.value)
    if on_open:  # one listing is enough: every reader refuses with the same message
        with pytest.raises(StoreError) as opened:
            FactorStore.open(store)
        with pytest.raises(StoreError) as loaded:
            load_decomposition(store)
        assert str(opened.value) == str(loaded.value)
        assert f"{store}/{key}" in str(opened.value) and "spd verify" in str(opened.value)
    else:  # the same size: the listing passes, but Zarr's CRC32C fails the read of that chunk
        assert FactorStore.open(store).integrity_note is None
        with pytest.raises(StoreError, match=r"modules/linear1/U .*checksum do not match"):
            load_decomposition(store)


def test_corrupt_root_metadata_is_named(store: Path):
    (store / "zarr.json").write_text("{not json")
    (problem,) = verify_store(store).problems
    assert (problem.kind, problem.node, problem.key) == ("metadata", "", "zarr.json")
    assert problem.found.startswith("not valid JSON")
    assert problem.describe(store).startswith(f"unreadable metadata: {store}/zarr.json (")


def test_a_chunk_added_after_completion_is_refused(store: Path):
    grown = store / "modules" / "linear1" / "U" / "c" / "9" / "0"
    grown.parent.mkdir()
    grown.write_bytes((store / CHUNK).read_bytes())
    with pytest.raises(StoreError, match=r"chunk added after completion: .*/U/c/9/0"):
        FactorStore.open(store)
    (problem,) = verify_store(store).problems
    assert (problem.kind, problem.node, problem.key) == ("unexpected", "modules/linear1/U", "c/9/0")


def test_stray_and_temporary_files_are_not_part_of_the_store(store: Path):
    (store / "README.txt").write_text("mine")
    (store / "modules/linear1/U/c/1/0.abc.partial").write_bytes(b"half")
    assert verify_store(store).ok
    FactorStore.open(store)


def test_a_complete_store_without_its_manifest_is_damaged(store: Path):
    shutil.rmtree(store / "integrity")
    with pytest.raises(StoreError, match=r"marked complete but has no integrity manifest"):
        FactorStore.open(store)
    (problem,) = verify_store(store).problems
    assert (problem.kind, problem.node) == ("manifest", "integrity")


def test_an_incomplete_store_is_a_problem_for_verify(tmp_path: Path):
    path = tmp_path / "s.zarr"
    StoreWriter.create(
        path, modules={"m": ModuleLayout("linear", 2, 3, 4)}, config={}, target_spec={}
    )
    report = verify_store(path)
    assert not report.ok and not report.verified
    assert [p.kind for p in report.problems] == ["incomplete"]
    assert FactorStore.open(path, allow_incomplete=True).integrity_note.startswith("incomplete")


def test_changing_a_complete_store_unmarks_it_until_it_is_recorded_again(store: Path):
    writer = StoreWriter.open_existing(store, allow_complete=True)
    rows = np.ones((5, 2), np.float32)
    writer.write_factor_rows("linear1", "U", 5, rows)
    with pytest.raises(StoreError, match="incomplete"):
        FactorStore.open(store)
    writer.mark_complete()
    assert verify_store(store).ok
    np.testing.assert_array_equal(FactorStore.open(store).U("linear1", slice(5, 10)), rows)


def test_a_schema_1_store_opens_with_a_note_and_verifies_what_it_can():
    with pytest.warns(UnverifiableStoreWarning, match=r"schema 1\), so it cannot be verified"):
        store = FactorStore.open(FIXTURE)
    assert "cannot be verified" in store.integrity_note
    report = verify_store(FIXTURE)
    assert report.ok and not report.verified and report.files_checked == 0
    assert "cannot be verified" in report.note


def test_verify_checks_shapes_against_the_schema(store: Path):
    meta = store / "modules" / "linear1" / "zarr.json"
    text = meta.read_text()
    assert text.count('"C": 20') == 1
    meta.write_text(text.replace('"C": 20', '"C": 21'))  # same size, still valid JSON
    checksum, schema = verify_store(store).problems
    assert (checksum.kind, checksum.node, checksum.key) == (
        "checksum",
        "modules/linear1",
        "zarr.json",
    )
    assert (schema.kind, schema.node) == ("schema", "modules")
    assert "U has shape (20, 2) but the module's attributes say (21, 2)" in schema.found


def test_a_url_store_is_recorded_listed_and_verified_the_same_way():
    root = f"integrity-{uuid.uuid4().hex}"
    url = f"memory://{root}/tms.zarr"
    with pytest.warns(UnverifiableStoreWarning):
        _rewrite(FactorStore.open(FIXTURE), url)
    assert verify_store(url).verified
    fsspec.filesystem("memory").rm(f"/{root}/tms.zarr/{CHUNK}")
    with pytest.raises(StoreError, match=rf"missing chunk: {url}/{CHUNK}"):
        FactorStore.open(url)
    (problem,) = verify_store(url).problems
    assert (problem.kind, problem.node, problem.key) == ("missing", "modules/linear1/U", "c/1/0")


def test_completion_makes_every_file_durable_before_the_manifest_and_the_manifest_before_the_flag(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "s.zarr"
    shutil.copytree(pristine, path)
    zarr.open_group(path, mode="r+").attrs["complete"] = False
    shutil.rmtree(path / "integrity")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, **kwargs) -> None:
        real_replace(src, dst, **kwargs)
        events.append(("replace", str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    StoreWriter.open_existing(path).mark_complete()
    monkeypatch.undo()

    manifest_at = events.index(("replace", str(path / "integrity" / "zarr.json")))
    flag_at = events.index(("replace", str(path / "zarr.json")))
    synced_before = {p for op, p in events[:manifest_at] if op == "fsync"}
    recorded = {str(path / k) for k in _manifest(path)["files"]}
    directories = {str(Path(p).parent) for p in recorded}
    assert recorded | directories <= synced_before
    assert ("fsync", str(path / "integrity")) in events[manifest_at:flag_at]
    assert events[flag_at + 1 :] == [("fsync", str(path / "zarr.json")), ("fsync", str(path))]
    assert zarr.open_group(path, mode="r").attrs["complete"] is True
