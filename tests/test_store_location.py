"""What a location is (a local path, or a URL with its storage options), where checkpoints go
beside a store, and what a driver hands its workers: pure logic, no server."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from services.harvest.checkpoints import checkpoint_dir_for as harvest_checkpoints_for
from services.train.job import ray_storage
from spd_core.store.location import Location, is_url
from spd_core.store.portable import portable
from spd_core.train.checkpoints import checkpoint_dir_for


def test_urls_stay_urls_and_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Location.of("s3://bucket/runs/tms.zarr/").where == "s3://bucket/runs/tms.zarr"
    assert Location.of("runs/tms.zarr").where == tmp_path / "runs" / "tms.zarr"
    assert Location.of(f"file://{tmp_path}/a.zarr").where == tmp_path / "a.zarr"
    assert is_url("gs://b/x") and not is_url("file:///x") and not is_url(Path("s3:/x"))
    url = Location.of("s3://bucket/runs/tms.zarr", {"endpoint_url": "http://h:1"})
    assert (url.protocol, url.name, str(url.parent)) == ("s3", "tms.zarr", "s3://bucket/runs")
    assert str(url.child("modules")) == "s3://bucket/runs/tms.zarr/modules"
    assert url.sibling(".checkpoints").storage_options == {"endpoint_url": "http://h:1"}
    assert Location.of(url, {"key": "k"}).storage_options == {
        "endpoint_url": "http://h:1",
        "key": "k",
    }


def test_checkpoints_default_beside_the_store_on_its_filesystem(tmp_path):
    store = Location.of("s3://bucket/tms.zarr", {"endpoint_url": "http://h:1"})
    train = checkpoint_dir_for(store, None)
    assert train == Location.of("s3://bucket/tms.zarr.checkpoints", {"endpoint_url": "http://h:1"})
    assert checkpoint_dir_for(store, "s3://other/ckpt").storage_options == store.storage_options
    assert checkpoint_dir_for(store, tmp_path / "ckpt") == Location.of(tmp_path / "ckpt")
    harvest = harvest_checkpoints_for(store, None)
    assert str(harvest) == "s3://bucket/tms.zarr.harvest-checkpoints"
    assert checkpoint_dir_for(tmp_path / "t.zarr", None).where == tmp_path / "t.zarr.checkpoints"


def test_ray_keeps_a_url_run_in_that_folder_through_the_same_filesystem(tmp_path):
    import pyarrow.fs

    local = ray_storage(Location.of(tmp_path / "t.zarr.checkpoints"))
    assert local == {"name": "t.zarr.checkpoints", "storage_path": str(tmp_path)}
    options = {"endpoint_url": "http://127.0.0.1:1", "key": "k", "secret": "s"}
    remote = ray_storage(Location.of("s3://bucket/runs/t.zarr.checkpoints", options))
    assert (remote["name"], remote["storage_path"]) == ("t.zarr.checkpoints", "bucket/runs")
    handler = remote["storage_filesystem"].handler
    assert isinstance(handler, pyarrow.fs.FSSpecHandler)
    assert handler.fs.storage_options["endpoint_url"] == "http://127.0.0.1:1"
    # it travels to the Train controller and workers with the credentials inside
    again = pickle.loads(pickle.dumps(remote["storage_filesystem"]))
    assert again.handler.fs.storage_options["key"] == "k"


def test_the_repr_of_a_location_names_its_options_never_their_values():
    location = Location.of("s3://b/x.zarr", {"key": "AKIA123", "secret": "hunter2"})
    assert "hunter2" not in repr(location) and "AKIA123" not in repr(location)
    assert repr(location) == "Location('s3://b/x.zarr', storage_options=<key, secret>)"


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """An environment whose only AWS settings are the ones a test sets."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADRIVER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "driver-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return monkeypatch


def test_workers_get_the_drivers_static_aws_credentials_endpoint_and_region(aws_env):
    found = portable(Location.of("s3://bucket/x.zarr"))
    assert found.storage_options == {
        "key": "AKIADRIVER",
        "secret": "driver-secret",
        "endpoint_url": "http://minio:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    given = {"key": "mine", "secret": "s", "endpoint_url": "http://other:1"}
    assert portable(Location.of("s3://bucket/x.zarr", given)).storage_options == {
        **given,
        "client_kwargs": {"region_name": "eu-west-1"},
    }  # what the user passed wins
    assert portable(Location.of("/tmp/x.zarr")) == Location.of("/tmp/x.zarr")


def test_credentials_from_a_node_role_are_left_to_each_node(aws_env):
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    aws_env.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role here either
    found = portable(Location.of("s3://bucket/x.zarr")).storage_options
    assert "key" not in found and found["endpoint_url"] == "http://minio:9000"


def test_workers_get_the_drivers_google_service_account(monkeypatch, tmp_path):
    account = {"type": "service_account", "client_email": "spd@p.iam.gserviceaccount.com"}
    (tmp_path / "sa.json").write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "sa.json"))
    assert portable(Location.of("gs://bucket/x.zarr")).storage_options == {"token": account}
    given = Location.of("gs://bucket/x.zarr", {"token": "anon"})
    assert portable(given).storage_options == {"token": "anon"}
