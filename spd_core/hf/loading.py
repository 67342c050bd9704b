"""Load a `transformers` model and its tokenizer from a local folder, a .gguf file, a package, or
a target spd builds itself (`tiny-llama-2l`, built once by `spd data build-target`).

A GGUF file is dequantized to fp32 once (about 20 s) and cached as config + tokenizer + state dict
under `<cache>/hf/<file stem>-<sha256 prefix>/`, from which later loads rebuild it in seconds
(`save_pretrained` refuses GGUF-loaded models, hence the plain state dict).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spd_core.extras import require
from spd_core.hf.causal_lm import is_causal_lm_model
from spd_core.hf.packaged import PACKAGED_MODELS, HFModelError, packaged_model_path
from spd_core.targets.registry import default_cache_dir
from spd_core.targets.tiny_llama.build import built_tiny_llama
from spd_core.targets.tiny_llama.spec import TINY_LLAMAS
from spd_core.targets.weights import (
    SafetensorsWeights,
    TargetWeights,
    TorchFileWeights,
    parameters_on_meta,
)

WEIGHTS = "weights.pt"


@dataclass
class HFTarget:
    """A frozen pretrained model, its tokenizer and the spec a store records to rebuild it.
    `weights` is where a model built with its parameters on the meta device reads them."""

    model: nn.Module
    tokenizer: Any
    spec: dict[str, Any]
    weights: TargetWeights | None = None

    @property
    def causal_lm(self) -> bool:
        return bool(self.spec["causal_lm"])

    @property
    def context_length(self) -> int:
        return int(self.spec["context_length"])


def resolve_source(model: str, cache_dir: Path | None = None) -> Path:
    """A packaged model's path, a built target's folder, or an existing local folder / .gguf."""
    if model in PACKAGED_MODELS:
        return packaged_model_path(model)
    if model in TINY_LLAMAS:
        folder = built_tiny_llama(model, cache_dir)
        if folder is None:
            raise HFModelError(
                f"model '{model}' is not built in {cache_dir or default_cache_dir()}; build it "
                f"once with `spd data build-target {model}` (about 15 minutes on a CPU)"
            )
        return folder
    path = Path(model).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path.resolve()
    raise HFModelError(
        f"model '{model}' is neither a packaged model ({', '.join(PACKAGED_MODELS)}), a target "
        f"spd builds ({', '.join(TINY_LLAMAS)}), nor a local folder with config.json or a .gguf "
        "file; spd never downloads models from a hub"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_gguf_dir(gguf: Path, cache_dir: Path | None = None) -> tuple[Path, str]:
    """(folder with config, tokenizer and fp32 weights, the file's sha256), converting once."""
    sha = _sha256(gguf)
    root = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "hf"
    folder = root / f"{gguf.stem}-{sha[:12]}"
    if (folder / WEIGHTS).is_file():
        return folder, sha
    require("gguf", f"reading {gguf.name}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    try:
        kwargs = {"gguf_file": gguf.name, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config  # the weights are plain fp32 now
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(model.state_dict(), tmp / WEIGHTS)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, sha


def _model_class(config: Any, name: str | None) -> type:
    import transformers

    name = name or next(iter(getattr(config, "architectures", None) or []), None)
    if name is None:
        return transformers.AutoModel
    cls = getattr(transformers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise HFModelError(f"model_class '{name}' is not a transformers model class")
    return cls


def _frozen(model: nn.Module) -> nn.Module:
    model.config.use_cache = False  # no key/value cache: masked forwards rerun the whole sequence
    model.requires_grad_(False)
    return model.eval()


def load_hf_target(
    model: str,
    model_class: str | None = None,
    cache_dir: Path | None = None,
    on_meta: bool = False,
) -> HFTarget:
    """The model named by a packaged name or local path, in fp32, frozen, in eval mode. With
    `on_meta` its parameters stay on the meta device, and `weights` reads them from the files
    (target sharding: each rank then reads only its rows)."""
    require("transformers", f"the Hugging Face target {model!r}")
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    source = resolve_source(model, cache_dir)
    gguf_sha = None
    folder = source
    if source.is_file():
        folder, gguf_sha = converted_gguf_dir(source, cache_dir)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        cls = _model_class(config, model_class)
        weights = None
        if on_meta:
            net, weights = _on_meta(cls, config, folder, gguf_sha is not None)
        elif gguf_sha is None:
            net = cls.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        else:
            net = cls(config)
            state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True, mmap=True)
            net.load_state_dict(state, strict=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        if isinstance(err, HFModelError):
            raise
        detail = str(err) if len(str(err)) < 600 else str(err)[:600] + " …"
        raise HFModelError(f"cannot load model '{model}' from {folder}: {detail}") from None
    net = _frozen(net.float())
    spec = {
        "kind": "hf",
        "model": model,
        "source": str(source),
        "gguf_sha256": gguf_sha,
        "converted": str(folder) if gguf_sha else None,
        "model_class": type(net).__name__,
        "causal_lm": is_causal_lm_model(net),
        "context_length": int(getattr(config, "max_position_embeddings", 0) or 0) or None,
        "vocab_size": int(net.get_input_embeddings().num_embeddings),
    }
    return HFTarget(net, tokenizer, spec, weights)


def _on_meta(
    cls: type, config: Any, folder: Path, converted: bool
) -> tuple[nn.Module, TargetWeights]:
    """The model with its parameters on the meta device, and the source of its weights."""
    with parameters_on_meta():
        net = cls(config)
    net.tie_weights()  # a tied head shares its embedding's (meta) parameter
    weights = TorchFileWeights(folder / WEIGHTS) if converted else _folder_weights(folder)
    if weights is None:
        raise HFModelError(
            f"target sharding reads each rank's rows of the weights from safetensors or torch "
            f"files, and {folder} has neither model.safetensors(.index.json) nor "
            "pytorch_model.bin; convert the model to safetensors, or drop --shard-target"
        )
    return net, weights


def _folder_weights(folder: Path) -> TargetWeights | None:
    weights = SafetensorsWeights.of_folder(folder)
    if weights is None and (folder / "pytorch_model.bin").is_file():
        return TorchFileWeights(folder / "pytorch_model.bin")
    return weights


def hf_target_from_spec(spec: dict[str, Any], cache_dir: Path | None = None) -> HFTarget:
    """Rebuild the target a store names; a GGUF source must still be the same file. A built
    target loads from the folder the store names, or is looked up by name if that is gone."""
    model = spec["model"] if spec["model"] in PACKAGED_MODELS else spec["source"]
    if spec["model"] in TINY_LLAMAS and not Path(spec["source"]).is_dir():
        model = spec["model"]
    target = load_hf_target(model, spec.get("model_class"), cache_dir)
    if spec.get("gguf_sha256") and target.spec["gguf_sha256"] != spec["gguf_sha256"]:
        raise HFModelError(
            f"model '{spec['model']}' at {target.spec['source']} is not the GGUF file the store "
            f"was made from (sha256 {spec['gguf_sha256'][:12]}…); reinstall that version"
        )
    return target
