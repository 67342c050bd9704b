"""The KubeRay manifests and image build for decomposition jobs use only what exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from services.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _parses(command: str) -> None:
    argv = shlex.split(command)
    assert argv[0] == "spd", command
    build_parser().parse_args(argv[1:])  # argparse exits (fails the test) on an unknown flag


def test_rayjob_entrypoint_is_a_valid_spd_command():
    (job,) = _docs("rayjob.yaml")
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    entrypoint = job["spec"]["entrypoint"]
    _parses(entrypoint)
    args = build_parser().parse_args(shlex.split(entrypoint)[1:])
    assert args.command == "decompose" and args.workers == 2 and args.strategy == "fsdp"
    assert args.out.startswith("/data/")  # on the volume every pod mounts


def test_commands_in_manifest_comments_are_valid():
    """Usage lines quoted in the manifests' comments must keep working too."""
    commands = []
    for name in ("raycluster.yaml", "rayjob.yaml"):
        text = (DEPLOY / name).read_text()
        lines = [ln.lstrip("# ").rstrip() for ln in text.splitlines() if ln.startswith("#")]
        joined = "\n".join(lines).replace("\\\n", " ")  # shell line continuations
        commands += re.findall(r"(?:^|--\s+)(spd [^\n]+)$", joined, flags=re.M)
    assert any("--strategy fsdp" in c for c in commands), commands
    for command in commands:
        _parses(command)


def test_every_pod_mounts_the_shared_volume_and_runs_the_image():
    cluster = next(d for d in _docs("raycluster.yaml") if d["kind"] == "RayCluster")
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"] == "spd:0.1.0"
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    claim = next(d for d in _docs("raycluster.yaml") if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_dockerfile_copies_paths_that_exist():
    text = (DEPLOY / "Dockerfile").read_text()
    copied = [
        tok for line in text.splitlines() if line.startswith("COPY") for tok in line.split()[1:-1]
    ]
    assert copied, "no COPY lines"
    for path in copied:
        assert (DEPLOY.parent / path).exists(), path
    assert "torch==2.13.0" in text


def test_the_object_storage_rayjob_needs_no_volume_and_keeps_everything_in_the_bucket():
    (job,) = _docs("rayjob-object-storage.yaml")
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    entrypoint = job["spec"]["entrypoint"]
    _parses(entrypoint)
    args = build_parser().parse_args(shlex.split(entrypoint)[1:])
    assert args.command == "decompose" and args.out.startswith("s3://")
    assert args.checkpoint_dir is None  # checkpoints beside the store, in the bucket
    cluster = job["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        assert "volumes" not in spec and "volumeMounts" not in container
        assert {"secretRef": {"name": "spd-s3"}} in container["envFrom"]  # the credentials
        env = {e["name"]: e["value"] for e in container["env"]}
        assert not env["SPD_CACHE_DIR"].startswith("/data")
    text = (DEPLOY / "rayjob-object-storage.yaml").read_text()
    lines = [ln.lstrip("# ").rstrip() for ln in text.splitlines() if ln.startswith("#")]
    for command in (ln for ln in lines if ln.startswith("spd ")):
        _parses(command)
    assert '".[s3,gcs]"' in (DEPLOY / "Dockerfile").read_text()  # the image has s3fs and gcsfs
