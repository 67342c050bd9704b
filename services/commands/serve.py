"""`spd serve STORE...`: answer gRPC and HTTP (the explorer, the JSON API) about factor stores
with Ray Serve."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings

from services.commands.store_location import add_storage_options, store_location
from services.serving.auth import TOKEN_ENV
from services.serving.catalog import Catalog, name_stores
from spd_core.extras import require
from spd_core.store import StoreError, UnverifiableStoreWarning

DESCRIPTION = """\
Start Ray Serve with a gRPC proxy and one application, "spd", that answers
spd.v1.DecompositionService (protos/spd/v1/) for the given stores, over gRPC and, on the HTTP
port, as a JSON API (POST /api/v1/{Method}) beside a browser explorer (open
http://127.0.0.1:8000/). Each STORE is a path or URL,
served under its file name without .zarr, or NAME=PATH to choose the name. Models are loaded on
first use; each replica keeps --max-loaded of them. Concurrent ComputeImportances calls share
one batched forward. Without --address a local Ray is started; Ctrl-C stops serving.
The gRPC port binds all interfaces; use --token (or $SPD_SERVE_TOKEN) to require
`authorization: Bearer <token>` metadata on every call (except the standard health check,
grpc.health.v1.Health/Check, which probes call without one); over HTTP every page and route
needs it too (a login page sets a cookie; GET /healthz stays open). Server reflection is on.
Each store's file listing is checked against its integrity manifest before serving (a missing
or truncated chunk refuses the store); --verify also reads and checks every byte.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve factor stores over gRPC and HTTP: the JSON API and the explorer (Ray Serve)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stores", nargs="+", metavar="STORE", help="PATH or NAME=PATH of a store")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (default 50051)")
    p.add_argument(
        "--http-port", type=int, default=8000, help="HTTP port: the explorer and the JSON API"
    )
    p.add_argument(
        "--http-host",
        default="127.0.0.1",
        help="HTTP interface (default 127.0.0.1; 0.0.0.0 for every interface: set a token)",
    )
    p.add_argument("--replicas", type=int, default=1, help="replicas of the deployment")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS or a local Ray)")
    p.add_argument("--token", help=f"require this bearer token (default ${TOKEN_ENV})")
    p.add_argument("--max-batch-size", type=int, default=32, help="1 turns batching off")
    p.add_argument("--max-loaded", type=int, default=4, help="models kept per replica")
    p.add_argument("--max-ongoing-requests", type=int, default=64, help="per replica")
    add_storage_options(p)
    p.add_argument(
        "--verify",
        action="store_true",
        help="read every file of every store and check it against the store's integrity "
        "manifest before serving (as `spd verify` does); without it, only the listing is checked",
    )


def _fail(message: str) -> int:
    print(f"spd serve: error: {message}", file=sys.stderr)
    return 2


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        stores = name_stores(args.stores)
        locations = {name: store_location(path, args) for name, path in stores.items()}
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always", UnverifiableStoreWarning)
            # fail here, before Ray starts, on a missing, damaged or unservable store
            catalog = Catalog(locations, verify=args.verify)
        for note in notes:
            print(f"spd serve: note: {note.message}", file=sys.stderr)
        if any(catalog.is_text(name) for name in stores):
            require("transformers", "serving a language-model store")
    except (ValueError, StoreError) as err:
        return _fail(str(err))
    import ray
    from ray import serve

    from services.ray_cluster import ClusterError, connect
    from services.serving.app import set_serve_env, start

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    set_serve_env()
    try:
        connect(args.address)
    except ClusterError as err:
        return _fail(str(err))
    app_args = {
        "stores": [f"{name}={path}" for name, path in stores.items()],
        "token": args.token or os.environ.get(TOKEN_ENV),
        "replicas": args.replicas,
        "max_batch_size": args.max_batch_size,
        "max_loaded": args.max_loaded,
        "max_ongoing_requests": args.max_ongoing_requests,
        "verify": args.verify,
        "storage_options": args.storage_options,
    }
    for sig in (signal.SIGTERM, signal.SIGINT):  # Ray replaces SIGINT's handler: take it back
        signal.signal(sig, _interrupt)
    try:
        start(app_args, grpc_port=args.port, http_port=args.http_port, http_host=args.http_host)
        names = ", ".join(stores)
        services = "gRPC spd.v1.DecompositionService, grpc.health.v1.Health"
        print(f"serving {names} on port {args.port} ({services})", flush=True)
        print(f"explorer and JSON API: http://{args.http_host}:{args.http_port}/", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
