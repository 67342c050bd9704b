"""The check a command makes on an object-store location before any work: the endpoint answers,
the credentials are accepted and the bucket exists, each failure one line that says what to fix.

It lists the bucket's top level once (one request), with retries off so that an unreachable
endpoint fails in seconds rather than after the filesystem's minute of backoff; nothing is
written.
"""

from __future__ import annotations

from typing import Any

from spd_core.store.errors import StoreError
from spd_core.store.location import Location
from spd_core.store.portable import portable

# options that make the one probe fail fast, per protocol (the user's options win)
_PROBE_OPTIONS: dict[str, dict[str, Any]] = {
    "s3": {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 5}},
}
_PROBE_OPTIONS["s3a"] = _PROBE_OPTIONS["s3"]

# exception class names (anywhere in the MRO) that mean the endpoint could not be reached
_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ServerTimeoutError",
    "ConnectionError",
    "TimeoutError",
}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"}


def _names(err: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(err).__mro__}


def _endpoint(location: Location) -> str:
    options = location.storage_options
    return str(
        options.get("endpoint_url")
        or (options.get("client_kwargs") or {}).get("endpoint_url")
        or f"the default {location.protocol}:// endpoint"
    )


def check_access(location: Location) -> None:
    """StoreError (one line) unless `location`'s bucket can be listed with the credentials and
    endpoint that the job's workers will be given (`portable`); a local path passes (its own
    checks come later)."""
    if not location.is_url:
        return
    resolved = portable(location)
    probe_options = {
        **_PROBE_OPTIONS.get(location.protocol, {}),
        **resolved.storage_options,
        "skip_instance_cache": True,
    }
    fs, path = Location.of(location.where, probe_options).filesystem()
    if hasattr(fs, "retries"):  # s3fs's own retry loop (a class attribute; this is our instance)
        fs.retries = 1
    bucket = path.split("/", 1)[0]
    where = f"{location.protocol}://{bucket}"
    hint = "set AWS_*/GOOGLE_* credentials or pass --storage-options"
    try:
        fs.ls(bucket, refresh=True)
    except FileNotFoundError:
        raise StoreError(
            f"{location}: the bucket {where} does not exist at {_endpoint(resolved)}; create it "
            "first or check the URL"
        ) from None
    except PermissionError as err:
        raise StoreError(
            f"{location}: access to {where} was refused ({_one_line(err)}); check the "
            f"credentials ({hint})"
        ) from None
    except Exception as err:
        names = _names(err)
        if names & _NO_CREDENTIALS:
            raise StoreError(f"{location}: no credentials for {where} were found; {hint}") from None
        if names & _UNREACHABLE or isinstance(err, OSError):
            raise StoreError(
                f"{location}: cannot reach the object store at {_endpoint(resolved)} "
                f"({_one_line(err)}); check the endpoint (AWS_ENDPOINT_URL or --storage-options "
                "endpoint_url) and the network"
            ) from None
        raise StoreError(f"{location}: cannot list {where} ({_one_line(err)})") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
