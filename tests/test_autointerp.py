"""`spd autointerp` against a real OpenAI-compatible server (`transformers serve` with SmolLM2):
labels, scores and token summaries stored under interp/, checked by `spd verify`, readable with
plain zarr, a stopped run resumed without asking twice, and every bad input refused first."""

from __future__ import annotations

import http.server
import json
import math
import shutil
import socket
import threading
from pathlib import Path

import pytest
import zarr

from services.cli import main
from spd_core.harvest import HarvestReader
from spd_core.interp import InterpReader, NoLabelsError, harvest_token_summaries
from spd_core.interp.checkpoint import Checkpoint, checkpoint_path
from spd_core.interp.prompts import TEMPLATE_SHA256
from spd_core.interp.schema import ARRAYS
from spd_core.store import FactorStore, verify_store

MODULE = "model.layers.3.mlp.down_proj"


def test_labels_stored_verified_and_readable_with_plain_zarr(labelled_text_store):
    path, _, out = labelled_text_store
    group = zarr.open_group(path / "interp", mode="r", zarr_format=3)
    assert group.attrs["complete"] is True and group.attrs["format"] == 1
    assert group.attrs["prompt_template_sha256"] == TEMPLATE_SHA256
    assert group.attrs["explainer_model"].endswith("smollm2-135m-pretrained")
    root = zarr.open_group(path, mode="r", zarr_format=3)
    assert root.attrs["spd_schema"] == 4
    module = group["modules"][MODULE]
    assert sorted(name for name, _ in module.arrays()) == sorted(ARRAYS)
    status = module["status"][:]
    harvest = HarvestReader.open(FactorStore.open(path))
    top_two = sorted(harvest.table(MODULE), key=lambda r: (-r.firing_frequency, r.component))[:2]
    asked = {r.component for r in top_two}
    for c in range(4):  # the two most frequent were asked; the others only summarised
        assert (status[c] in ("labelled", "unparsed")) == (c in asked), (c, status)
        assert (module["explainer_requests"][c] >= 1) == (c in asked)
        assert module["answer"][c] != "" if c in asked else module["answer"][c] == ""
    assert list(module["token_summary"][:]) == harvest_token_summaries(harvest, MODULE)
    assert all(s.startswith("fires on ") for s in module["token_summary"][:])
    scores = module["detection_score"][:]
    for c in range(4):
        labelled = status[c] == "labelled"
        assert math.isnan(scores[c]) or (labelled and 0 <= scores[c] <= 1)
    report = verify_store(path)
    assert report.ok and report.verified and report.interp == "complete", report.problems
    assert "stored under interp/" in out


def test_a_stopped_run_resumes_without_asking_again(labelled_text_store):
    path, stopped_records, out = labelled_text_store
    first = [r for r in stopped_records if r.get("kind") == "label"]
    assert len(first) >= 1
    assert "1 already labelled" in out or f"{len(first)} already labelled" in out
    assert f"{2 - len(first)} asked now, {len(first)} from the stopped run" in out
    module = zarr.open_group(path / "interp", mode="r")["modules"][MODULE]
    for r in first:  # the stored result is the stopped run's, not a second answer
        c = r["component"]
        assert module["answer"][c] == r["answer"]
        assert module["explainer_requests"][c] == r["explainer_requests"]
    assert not checkpoint_path(path).exists()


def test_spd_verify_names_a_damaged_label_file(labelled_text_store, tmp_path, capsys):
    copy = tmp_path / "smol.zarr"
    shutil.copytree(labelled_text_store[0], copy)
    chunk = next((copy / "interp" / "modules" / MODULE / "token_summary").rglob("c/*"))
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the checksum can tell
    chunk.write_bytes(bytes(data))
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert f"interp/modules/{MODULE}/token_summary" in out and "wrong checksum" in out


def test_labels_of_an_earlier_harvest_are_refused(labelled_text_store, tmp_path):
    copy = tmp_path / "smol.zarr"
    shutil.copytree(labelled_text_store[0], copy)
    harvest = HarvestReader.open(FactorStore.open(copy))
    InterpReader.open(harvest)  # fine as written
    meta = copy / "interp" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["harvest_manifest_sha256"] = "0" * 64
    meta.write_text(json.dumps(doc))
    with pytest.raises(NoLabelsError, match="earlier harvest"):
        InterpReader.open(harvest)


def test_inspect_component_prints_label_or_token_summary(labelled_text_store, capsys):
    path = labelled_text_store[0]
    assert main(["inspect", str(path), "--component", f"{MODULE}:0"]) == 0
    out = capsys.readouterr().out
    module = zarr.open_group(path / "interp", mode="r")["modules"][MODULE]
    assert f"token summary {module['token_summary'][0]}" in out
    if module["status"][0] == "labelled":
        assert f"label         {module['label'][0]}" in out


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A server that answers every request 401, as an OpenAI-compatible API without the key."""

    def _refuse(self) -> None:
        body = json.dumps({"error": {"message": "invalid api key", "type": "auth"}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def refusing_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def harvested_copy(harvested_text_store, tmp_path) -> Path:
    path = tmp_path / "smol.zarr"
    shutil.copytree(harvested_text_store[0], path)
    return path


def _refused(argv: list[str], capsys) -> str:
    assert main(["autointerp", *argv]) == 2
    return capsys.readouterr().err


def test_unreachable_endpoint_and_401_are_refused_before_any_work(
    harvested_copy, refusing_server, capsys
):
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    err = _refused(
        [str(harvested_copy), "--endpoint", dead, "--model", "m", "--retries", "0"], capsys
    )
    assert f"cannot reach the endpoint {dead}" in err and "is the server running" in err
    err = _refused([str(harvested_copy), "--endpoint", refusing_server, "--model", "m"], capsys)
    assert "refused the request (401 Unauthorized)" in err and "--api-key-env" in err
    assert not (harvested_copy / "interp").exists()
    assert not checkpoint_path(harvested_copy).exists()


def test_store_without_harvest_and_toy_decomposition_are_refused(
    harvest_toy_store, harvested_text_store, tmp_path, capsys
):
    from spd_core.harvest import HarvestSettings, harvest, harvest_inputs, write_harvest
    from spd_core.loading import load_decomposition

    args = ["--endpoint", "http://127.0.0.1:9/v1", "--model", "m"]
    err = _refused([str(harvest_toy_store), *args], capsys)
    assert "has no harvest: run `spd harvest" in err
    toy = tmp_path / "tms.zarr"
    shutil.copytree(harvest_toy_store, toy)
    store = FactorStore.open(toy)
    dec = load_decomposition(store)
    s = HarvestSettings(threshold=dec.config.ci_alive_threshold, shard_size=64)
    write_harvest(toy, harvest(dec, harvest_inputs(store, dec, s, inputs=64), s))
    err = _refused([str(toy), *args], capsys)
    assert "a toy model" in err and "only decompositions of language models" in err


def test_resume_with_other_settings_is_refused(harvested_copy, capsys):
    base = ["--endpoint", "http://127.0.0.1:9/v1", "--model", "m"]
    err = _refused([str(harvested_copy), *base, "--resume"], capsys)
    assert "nothing to resume" in err
    checkpoint = Checkpoint.start(
        checkpoint_path(harvested_copy), {"explainer_model": "other"}, False
    )
    checkpoint.append({"kind": "label", "module": MODULE, "component": 0})
    err = _refused([str(harvested_copy), *base, "--resume", "--limit", "2"], capsys)
    assert "--resume needs the settings of the stopped run" in err
    assert "explainer_model 'other' (now 'm')" in err
    err = _refused([str(harvested_copy), *base], capsys)
    assert "a stopped labelling run left" in err and "--resume" in err
    assert not (harvested_copy / "interp").exists()
