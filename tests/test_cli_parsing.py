"""What users rely on from the command line itself: parsing, what it loads, how it exits."""

import subprocess
import sys

from services.cli import build_parser
from tests.test_store_compat import FIXTURE as SCHEMA1_STORE


def test_query_connection_options_work_before_and_after_the_query_name():
    parser = build_parser()
    after = parser.parse_args(["query", "list", "--address", "h:1", "--json"])
    before = parser.parse_args(["query", "--address", "h:2", "--token", "t", "list"])
    default = parser.parse_args(["query", "describe", "tms"])
    assert (after.address, after.json, after.token) == ("h:1", True, None)
    assert (before.address, before.json, before.token) == ("h:2", False, "t")
    assert (default.address, default.json) == ("127.0.0.1:50051", False)


def test_decompose_defaults_to_one_ddp_worker_on_ray():
    args = build_parser().parse_args(["decompose", "tms-5-2", "--out", "x.zarr"])
    assert (args.workers, args.strategy, args.no_ray, args.address) == (1, "ddp", False, None)


def test_the_cli_loads_no_grpc_client_or_generated_code_until_a_query_runs():
    # The generated gRPC code refuses a grpcio older than the one it was built with; `spd
    # decompose` and `spd inspect` must still run on such a machine (e.g. a GPU image).
    code = (
        "import sys, services.cli; services.cli.build_parser(); "
        "print([m for m in sys.modules if m.startswith('spd_client')])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_a_reader_that_leaves_early_gets_no_traceback():
    code = "import sys; from services.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "inspect", str(SCHEMA1_STORE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # like `| head` exiting before spd writes
    stderr = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
