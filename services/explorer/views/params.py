"""Query-string parameters of the pages, checked: a bad one is a 400 that says what was wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.explorer.page_errors import bad_parameter, not_found

MAX_TEXT = 2000
"""Characters of a free-text parameter (a search, a probe)."""


def choice(params: Mapping[str, str], key: str, allowed: Sequence[str], default: str) -> str:
    value = params.get(key) or default
    if value not in allowed:
        raise bad_parameter(f"{key}={value!r} is not one of {', '.join(allowed)}")
    return value


def positive_int(params: Mapping[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise bad_parameter(f"{key}={raw!r} is not a whole number >= 1")
    return int(raw)


def text(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT:
        raise bad_parameter(f"{key} is {len(value)} characters long; at most {MAX_TEXT}")
    return value


def module(value: str | None, modules: Sequence[str], name: str) -> str | None:
    """A module of the decomposition (404 naming its modules), or None when not given."""
    if value is None or value == "":
        return None
    if value not in modules:
        raise not_found(
            f"decomposition {name!r} has no module {value!r}; its modules: {', '.join(modules)}"
        )
    return value


def component_index(raw: str, c: int, module_name: str) -> int:
    """A component index in [0, C): 400 when not a number, 404 when out of range."""
    if not raw.isdigit():
        raise bad_parameter(f"component index {raw!r} is not a whole number >= 0")
    index = int(raw)
    if index >= c:
        raise not_found(
            f"module {module_name!r} has {c} components (0..{c - 1}); there is no {index}"
        )
    return index
