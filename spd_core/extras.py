"""Optional dependencies: which of spd's extras provides each, and the one-line error when one
is missing (commands print it instead of a traceback)."""

from __future__ import annotations

import importlib.util

# import name -> the extra of pyproject.toml that installs it
EXTRA_OF_PACKAGE = {
    "transformers": "lm",
    "gguf": "lm",
    "accelerate": "lm",
    "rdata": "lm",
    "grpc_tools": "dev",
    "openai": "interp",
    "s3fs": "s3",  # stores, checkpoints and harvest shards on s3:// (spd_core.store.location)
    "botocore": "s3",
    "gcsfs": "gcs",  # ... on gs://
}


class MissingExtraError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that provides it."""


def missing_extra_message(package: str | None, purpose: str | None = None) -> str | None:
    """What to install for `package` (an import name), or None if no extra provides it."""
    top = (package or "").split(".")[0]
    extra = EXTRA_OF_PACKAGE.get(top)
    if extra is None:
        return None
    needs = f"{purpose} needs" if purpose else "this needs"
    return (
        f"{needs} the Python package '{top}' from spd's [{extra}] extra: "
        f"pip install -e '.[{extra}]' in a checkout (or pip install 'spd[{extra}]')"
    )


def require(package: str, purpose: str) -> None:
    """Raise `MissingExtraError` (one actionable line) unless `package` can be imported."""
    if importlib.util.find_spec(package) is None:
        message = missing_extra_message(package, purpose)
        if message is None:
            message = f"{purpose} needs the Python package '{package}': pip install {package}"
        raise MissingExtraError(message, name=package)
