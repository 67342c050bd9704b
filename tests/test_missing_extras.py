"""A command whose optional extra is not installed says in one line what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from spd_core.extras import EXTRA_OF_PACKAGE, MissingExtraError, missing_extra_message, require

# Runs the CLI in a fresh interpreter in which the named packages cannot be imported.
_WITHOUT = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    blocked = set(sys.argv[1].split(","))

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    import importlib.util
    find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda n, *a: None if n.split(".")[0] in blocked else find_spec(n, *a)
    from services.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _spd_without(packages: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, packages, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "SPD_CACHE_DIR": str(cwd / "cache")},
    )


def test_decompose_of_a_language_model_without_the_lm_extra_says_what_to_install(tmp_path):
    out = tmp_path / "smol.zarr"
    run = _spd_without(
        "transformers", "decompose", "smollm2-mlp", "--out", str(out), "--no-ray", cwd=tmp_path
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("spd decompose: error: ")
    assert "'transformers'" in lines[0] and "pip install -e '.[lm]'" in lines[0]
    assert not out.exists()  # nothing written


def test_fetching_an_r_corpus_without_rdata_says_what_to_install_before_downloading(tmp_path):
    run = _spd_without("rdata", "data", "fetch", "jane-austen", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert "'rdata'" in run.stderr and "[lm]" in run.stderr
    assert not list(tmp_path.rglob("*.deb"))  # refused before the download


def test_a_missing_package_no_extra_provides_is_not_disguised():
    assert missing_extra_message("numpy") is None
    assert "[lm]" in missing_extra_message("transformers.models.llama")


def test_require_names_the_purpose_and_what_to_install(monkeypatch):
    monkeypatch.setitem(EXTRA_OF_PACKAGE, "not_installed_pkg", "lm")
    with pytest.raises(
        MissingExtraError, match=r"^reading x\.gguf needs .*'not_installed_pkg'.*\[lm\]"
    ):
        require("not_installed_pkg", "reading x.gguf")
    with pytest.raises(
        MissingExtraError, match=r"needs the Python package 'other_pkg': pip install"
    ):
        require("other_pkg", "something")
    require("numpy", "anything")  # installed: no error


def test_a_store_on_s3_without_s3fs_says_what_to_install_before_any_work(tmp_path):
    run = _spd_without("s3fs,botocore", "verify", "s3://bucket/tms.zarr", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("spd verify: error: a store on s3://")
    assert "'s3fs'" in lines[0] or "'botocore'" in lines[0]
    assert "pip install 'spd[s3]'" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written (no local folder named s3:)
