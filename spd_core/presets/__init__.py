"""Decomposition presets: the paper's recipes, shipped as YAML files beside this module."""

from __future__ import annotations

from pathlib import Path

from spd_core.config import Config, ConfigError, load_config

PRESET_DIR = Path(__file__).parent


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_config(preset_or_path: str) -> Config:
    """A preset name (e.g. `tms-5-2`) or the path of a YAML config file."""
    if preset_or_path.endswith((".yaml", ".yml")) or Path(preset_or_path).is_file():
        return load_config(preset_or_path)
    path = PRESET_DIR / f"{preset_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown preset '{preset_or_path}' (and no such config file); "
            f"presets: {', '.join(preset_names())}"
        )
    return load_config(path)
