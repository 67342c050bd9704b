"""The full check of a factor store: every recorded file present with its size and SHA-256,
every metadata document readable, and the shapes the schema requires."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
from zarr.errors import ZarrUserWarning

from spd_core.store.access import PathLike, guard, open_root
from spd_core.store.errors import StoreError
from spd_core.store.integrity import Problem, compare_listing, describe_entry, unverifiable_note
from spd_core.store.layout import FIRST_VERIFIABLE_SCHEMA, INTEGRITY, MODULES, PRODUCTS
from spd_core.store.listing import list_objects
from spd_core.store.location import Location
from spd_core.store.manifest import (
    METADATA,
    Manifest,
    is_metadata,
    node_path,
    read_manifest,
    read_stored,
    tracked,
)
from spd_core.store.validate import check_schema, read_layouts


@dataclass
class VerifyReport:
    """What `verify_store` found. `ok`: nothing wrong; `verified`: and every file was checked
    against a manifest (False for incomplete and schema-1 stores)."""

    path: str
    schema: int | None = None
    complete: bool = False
    verified: bool = False
    note: str | None = None
    files_checked: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    harvest: str | None = None
    """"complete" or "incomplete" when the store has a `harvest/` group (schema 3), else None;
    a complete harvest's files are checked against its own manifest like the decomposition's."""
    interp: str | None = None
    """The same for the labels' `interp/` group (schema 4)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "verified": self.verified,
            "schema": self.schema,
            "complete": self.complete,
            "note": self.note,
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "seconds": round(self.seconds, 6),
            "harvest": self.harvest,
            "interp": self.interp,
            "problems": [p.to_json() for p in self.problems],
        }


def _json_error(data: bytes) -> str | None:
    """Why `data` is not a JSON object, or None if it is one."""
    try:
        doc = json.loads(data)
    except ValueError as err:
        return f"not valid JSON ({err})"
    return None if isinstance(doc, dict) else f"JSON {type(doc).__name__}, not an object"


def _check_files(
    path: str | Path, root: zarr.Group, manifest: Manifest, report: VerifyReport
) -> None:
    """Presence and size from one listing; then the bytes of every file of the right size."""
    listing = list_objects(path, root)
    problems = compare_listing(manifest, listing)
    wrong_size = {f"{p.node}/{p.key}".lstrip("/") for p in problems if p.kind == "size"}
    present = sorted(k for k in manifest.files if k in listing)
    for key, stored in read_stored(path, root, present):
        if stored is None:  # removed while we read
            continue
        report.files_checked += 1
        report.bytes_checked += stored.size
        size, sha256 = manifest.files[key]
        node, sub = manifest.locate(key)
        bad_json = _json_error(stored.document) if stored.document is not None else None
        if bad_json is not None:
            problems = [p for p in problems if (p.node, p.key) != (node, sub)]
            found = f"{describe_entry(stored.size, stored.sha256)}, {bad_json}"
            problems.append(Problem("metadata", node, sub, describe_entry(size, sha256), found))
        elif key not in wrong_size and stored.sha256 != sha256:
            problems.append(
                Problem("checksum", node, sub, f"sha256 {sha256}", f"sha256 {stored.sha256}")
            )
    report.problems.extend(sorted(problems, key=lambda p: (p.node, p.key)))


def _check_metadata_and_schema(path: str | Path, root: zarr.Group, report: VerifyReport) -> None:
    """Every metadata document parses and opens as a Zarr node; the modules' factors have the
    shapes their attributes say. (Documents already reported are not reported again.)"""
    reported = {(p.node, p.key) for p in report.problems}
    listing = list_objects(path, root)
    meta_keys = sorted(k for k in listing if is_metadata(k) and tracked(k))
    for key, stored in read_stored(path, root, meta_keys):
        error = "absent" if stored is None else _json_error(stored.document or b"")
        node = node_path(key)
        if error is not None and (node, METADATA) not in reported:
            report.problems.append(Problem("metadata", node, METADATA, "valid Zarr JSON", error))
    if any(p.kind == "metadata" for p in report.problems):
        return  # Zarr would only fail again on the same documents
    try:
        with guard(path, "(every node)"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ZarrUserWarning)  # stray files are not nodes
            dict(root.members(max_depth=None))
    except StoreError as err:
        report.problems.append(Problem("metadata", "", "", "every node opens with Zarr", str(err)))
        return
    try:
        read_layouts(root, path)
    except StoreError as err:
        expected = "U (C, d_out) and V (C, d_in) of every module, as its attributes say"
        report.problems.append(Problem("schema", MODULES, "", expected, str(err)))


def verify_store(path: PathLike, *, storage_options: dict[str, Any] | None = None) -> VerifyReport:
    """Check a store fully; every problem is in the report, named by node and file.

    StoreError only when `path` is not an spd factor store at all (missing, not Zarr, no
    spd_schema) or is of a newer schema than this spd reads.
    """
    start = time.perf_counter()
    location = Location.of(path, storage_options)
    target, storage_options = location.where, location.storage_options
    report = VerifyReport(str(target))
    try:
        root = open_root(target, "r", storage_options=storage_options)
        with guard(target, METADATA):
            attrs = root.attrs.asdict()
    except StoreError as err:
        if not (isinstance(target, Path) and (target / METADATA).is_file()):
            raise
        found = _json_error((target / METADATA).read_bytes()) or str(err)
        report.problems.append(Problem("metadata", "", METADATA, "valid Zarr JSON", found))
        report.seconds = time.perf_counter() - start
        return report
    report.schema = check_schema(attrs, target)
    report.complete = attrs.get("complete") is True
    if not report.complete:  # nothing to check against: a run may still be creating nodes
        report.problems.append(
            Problem(
                "incomplete",
                "",
                "",
                "complete = true (set last by the run that wrote the store)",
                "complete = false: the run did not finish, or is still running",
            )
        )
        report.seconds = time.perf_counter() - start
        return report
    if report.schema < FIRST_VERIFIABLE_SCHEMA:
        report.note = unverifiable_note(report.schema)
    else:
        try:
            manifest = read_manifest(target, root)
        except StoreError as err:
            expected = "the integrity manifest written at completion"
            report.problems.append(Problem("manifest", INTEGRITY, METADATA, expected, str(err)))
        else:
            _check_files(target, root, manifest, report)
            report.verified = True
    _check_metadata_and_schema(target, root, report)
    for product in PRODUCTS:
        _check_product(target, root, report, product)
    report.verified = report.verified and report.ok
    report.seconds = time.perf_counter() - start
    return report


def _check_product(path: str | Path, root: zarr.Group, report: VerifyReport, group: str) -> None:
    """A complete harvest (or labels, `group` "interp"): its files against its manifest, its
    metadata documents readable. An incomplete one (still running, or stopped) is reported as
    such, not as damage: readers refuse it, and the decomposition beside it is whole."""
    listing = list_objects(path, root)
    if f"{group}/{METADATA}" not in listing:
        return
    try:
        with guard(path, group):
            complete = root[group].attrs.get("complete") is True
    except StoreError as err:
        report.problems.append(Problem("metadata", group, METADATA, "valid Zarr JSON", str(err)))
        return
    setattr(report, group, "complete" if complete else "incomplete")
    if not complete:
        return
    try:
        manifest = read_manifest(path, root, group)
    except StoreError as err:
        expected = f"the {group} group's integrity manifest written at its completion"
        report.problems.append(
            Problem("manifest", f"{group}/{INTEGRITY}", METADATA, expected, str(err))
        )
        return
    _check_files(path, root, manifest, report)
