"""A location another process can open as this one does: what a driver hands its Ray workers.

A driver finds its object-store credentials and endpoint where boto/s3fs and gcsfs look for them
(environment variables such as `AWS_ACCESS_KEY_ID` and `AWS_ENDPOINT_URL`, `~/.aws` files,
`GOOGLE_APPLICATION_CREDENTIALS`). A Ray worker or Train controller on another node, or started
before those variables were set, has none of them; so the static ones the driver resolved are
written into the location's storage options, which travel with the job. Credentials that every
node obtains by itself (an instance role, a Kubernetes service account) are left to each node:
they are temporary and renewed there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spd_core.extras import require
from spd_core.store.location import Location

# botocore's names for credential sources that are static and belong to this process only
_STATIC_AWS_SOURCES = {"env", "shared-credentials-file", "config-file", "explicit"}
_AWS_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_GCLOUD_ADC = Path("~/.config/gcloud/application_default_credentials.json")


def portable(location: Location) -> Location:
    """`location` with the driver's static credentials, endpoint and region in its storage
    options (options given explicitly win); unchanged for a local path or another protocol."""
    if location.protocol in ("s3", "s3a"):
        return Location.of(location.where, {**_aws_options(location.storage_options)})
    if location.protocol in ("gs", "gcs"):
        return Location.of(location.where, _gcs_options(location.storage_options))
    return location


def _aws_options(given: dict[str, Any]) -> dict[str, Any]:
    require("botocore", "a store on s3://")
    import botocore.session

    options = dict(given)
    session = botocore.session.Session(profile=given.get("profile"))
    if not {"key", "secret", "anon", "token"} & given.keys():
        credentials = session.get_credentials()
        if credentials is not None and credentials.method in _STATIC_AWS_SOURCES:
            frozen = credentials.get_frozen_credentials()
            options.update(key=frozen.access_key, secret=frozen.secret_key)
            if frozen.token:
                options["token"] = frozen.token
            options.pop("profile", None)  # resolved: a worker need not have the profile
    client = dict(given.get("client_kwargs") or {})
    if "endpoint_url" not in given and "endpoint_url" not in client:
        endpoint = next((os.environ[v] for v in _AWS_ENDPOINT_VARS if os.environ.get(v)), None)
        if endpoint:
            options["endpoint_url"] = endpoint
    if "region_name" not in client:
        region = session.get_config_variable("region")
        if region:
            options["client_kwargs"] = {**client, "region_name": region}
    return options


def _gcs_options(given: dict[str, Any]) -> dict[str, Any]:
    if "token" in given:
        return dict(given)
    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    file = Path(named) if named else _GCLOUD_ADC.expanduser()
    if not file.is_file():
        return dict(given)
    return {**given, "token": json.loads(file.read_text())}
