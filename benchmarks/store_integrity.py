"""What store integrity costs: recording the manifest at completion, a full verify, and the
listing check every reader makes when it opens a complete store.

    python benchmarks/store_integrity.py [--gb 1] [--chunk-files 2000 20000] [--dir DIR]

- Per GB: a store with one module whose random float32 factors (incompressible, so stored bytes
  = raw bytes) take --gb GB in 32 MB chunks. Figures: seconds per GB to mark it complete (read,
  SHA-256 and fsync every file, write the manifest), to verify it (`spd verify`: read and
  SHA-256 every file; the files were just written, so they come from the page cache, and a cold
  read is bounded by the disk instead), and the SHA-256 speed of one core for reference.
- Per chunk count: for each N in --chunk-files, a store of N chunk files (one component per
  chunk, the most files a store of that size can have). Figures: the whole `FactorStore.open`,
  its integrity check alone (one listing, the manifest read, the comparison), the listing
  alone, the manifest's size, and the time to mark the store complete.
Stores are written under --dir (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from jsonl import emit

from spd_core.store import FactorStore, ModuleLayout, StoreWriter, verify_store
from spd_core.store.integrity import compare_listing
from spd_core.store.listing import list_objects
from spd_core.store.manifest import MANIFEST_KEY, read_manifest

CHUNK_BYTES = 32 << 20


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best(fn, repeats: int = 3) -> float:
    return min(_timed(fn) for _ in range(repeats))


def per_gigabyte(root: Path, gb: float) -> None:
    width = 1 << 16  # floats per row of U and of V
    rows_per_chunk = CHUNK_BYTES // (4 * width)
    C = max(rows_per_chunk, int(gb * 1e9 / (2 * 4 * width)) // rows_per_chunk * rows_per_chunk)
    path = root / "gigabyte.zarr"
    writer = StoreWriter.create(
        path,
        modules={"m": ModuleLayout("linear", C, width, width)},
        config={},
        target_spec={},
        chunk_c=rows_per_chunk,
    )
    rng = np.random.default_rng(0)
    for factor in ("U", "V"):
        for start in range(0, C, rows_per_chunk):
            rows = rng.standard_normal((rows_per_chunk, width), dtype=np.float32)
            writer.write_factor_rows("m", factor, start, rows)
    complete_s = _timed(writer.mark_complete)
    stored = sum(size for size, _ in read_manifest(path, zarr.open_group(path)).files.values())
    size_gb = stored / 1e9
    report = verify_store(path)
    assert report.verified, report.problems
    verify_s = _best(lambda: verify_store(path), repeats=2)
    data = os.urandom(256 << 20)
    sha_s = _best(lambda: hashlib.sha256(data).digest())
    emit("integrity/store_gb", size_gb, "GB")
    emit("integrity/complete_s_per_gb", complete_s / size_gb, "s/GB")
    emit("integrity/verify_s_per_gb", verify_s / size_gb, "s/GB")
    emit("integrity/sha256_one_core_gb_per_s", len(data) / 1e9 / sha_s, "GB/s")
    emit("integrity/open_ms_gigabyte_store", _best(lambda: FactorStore.open(path)) * 1e3, "ms")
    shutil.rmtree(path)


def per_chunk_count(root: Path, files: int) -> None:
    C = files // 2  # one row of U and one of V per chunk: two files per component
    path = root / f"chunks-{files}.zarr"
    writer = StoreWriter.create(
        path,
        modules={"m": ModuleLayout("linear", C, 1, 1)},
        config={},
        target_spec={},
        chunk_c=1,
    )
    writer.write_factor_rows("m", "U", 0, np.ones((C, 1), np.float32))
    writer.write_factor_rows("m", "V", 0, np.ones((C, 1), np.float32))
    complete_s = _timed(writer.mark_complete)
    group = zarr.open_group(path, mode="r")

    def check() -> None:
        assert not compare_listing(read_manifest(path, group), list_objects(path, group))

    emit(
        f"integrity/open_ms_{files}_chunk_files", _best(lambda: FactorStore.open(path)) * 1e3, "ms"
    )
    emit(f"integrity/check_ms_{files}_chunk_files", _best(check) * 1e3, "ms")
    listing_s = _best(lambda: list_objects(path, group))
    emit(f"integrity/listing_ms_{files}_chunk_files", listing_s * 1e3, "ms")
    emit(f"integrity/manifest_bytes_{files}_chunk_files", (path / MANIFEST_KEY).stat().st_size, "B")
    emit(f"integrity/complete_s_{files}_chunk_files", complete_s, "s")
    shutil.rmtree(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the per-GB store")
    parser.add_argument("--chunk-files", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--dir", type=Path, help="where to write the stores (default: a temp dir)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="spd-integrity-"))
    try:
        per_gigabyte(root, args.gb)
        for files in args.chunk_files:
            per_chunk_count(root, files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
