"""The commands' one way from what a user typed to a store location: `--storage-options JSON`,
and the check of an object-store location before any work."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from spd_core.store.location import Location
from spd_core.store.reachability import check_access

STORAGE_OPTIONS_HELP = (
    "JSON object of fsspec storage options for s3:// or gs:// locations (the store, "
    '--checkpoint-dir), e.g. \'{"endpoint_url": "http://minio:9000"}\'; credentials otherwise '
    "come from where boto/s3fs and gcsfs look (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws, "
    "GOOGLE_APPLICATION_CREDENTIALS); Ray workers are given what this process found"
)


def json_object(text: str) -> dict[str, Any]:
    """argparse type of --storage-options: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options", type=json_object, default={}, metavar="JSON", help=STORAGE_OPTIONS_HELP
    )


def store_location(where: str | Path, args: argparse.Namespace) -> Location:
    """`where` with the command's --storage-options, checked: an object store must answer, take
    the credentials and have the bucket (StoreError, one line, otherwise)."""
    location = Location.of(where, getattr(args, "storage_options", None) or {})
    check_access(location)
    return location
