"""Rebuild a trained ComponentModel from a factor store (no training, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from spd_core.config import Config, config_from_dict
from spd_core.hf.packaged import HFModelError
from spd_core.model.component_model import ComponentModel
from spd_core.model.global_ci_functions import GlobalCIFunction
from spd_core.store import FactorStore, StoreError
from spd_core.store.location import Location

if TYPE_CHECKING:
    from spd_core.hf.loading import HFTarget


def target_from_store(store: FactorStore) -> nn.Module:
    """The target model a store was made from: toy stores carry their own weights; a Hugging Face
    store names its local model (package, folder or GGUF file, via the converted-weights cache)."""
    spec = store.target_spec
    if spec.get("kind") == "hf":
        return hf_target_of(store).model
    if spec.get("kind") != "toy":
        raise StoreError(
            f"{store.path}: target kind {spec.get('kind')!r} is not self-contained; "
            "load the target yourself and call load_component_model(store, target=...)"
        )
    from spd_core.targets.registry import parse_target_spec, toy_target_from_state

    state = store.target_state()
    if state is None:
        raise StoreError(f"{store.path}: toy store has no target weights under target/")
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    return toy_target_from_state(parse_target_spec(spec["spec"]), tensors).model


def hf_target_of(store: FactorStore) -> HFTarget:
    """The Hugging Face model and tokenizer a store names (StoreError if they cannot be loaded)."""
    from spd_core.hf.loading import hf_target_from_spec

    try:
        return hf_target_from_spec(store.target_spec)
    except HFModelError as err:
        raise StoreError(f"{store.path}: cannot rebuild its target: {err}") from None


@dataclass
class Decomposition:
    """A loaded decomposition: the component model, its config and, for text models, the
    tokenizer and the target's spec (context length, vocabulary size)."""

    model: ComponentModel
    config: Config
    tokenizer: Any | None
    target_spec: dict[str, Any]


def load_decomposition(
    store: FactorStore | str | Path | Location, device: str = "cpu"
) -> Decomposition:
    """Everything needed to compute importances on new inputs, from the store alone."""
    if not isinstance(store, FactorStore):
        store = FactorStore.open(store)
    tokenizer = None
    target = None
    if store.target_spec.get("kind") == "hf":
        hf = hf_target_of(store)
        target, tokenizer = hf.model, hf.tokenizer
    model, config = load_component_model(store, target=target, device=device)
    return Decomposition(model, config, tokenizer, store.target_spec)


def load_component_model(
    store: FactorStore | str | Path | Location, target: nn.Module | None = None, device: str = "cpu"
) -> tuple[ComponentModel, Config]:
    """The decomposition in `store` as a ComponentModel with its learned U, V and CI functions."""
    if not isinstance(store, FactorStore):
        store = FactorStore.open(store)
    config = config_from_dict(store.config, source=f"stored in {store.path}")
    target = target if target is not None else target_from_store(store)
    model = ComponentModel.from_config(target, config)  # eager CI kernels: no compiler needed
    with torch.no_grad():
        for name in model.module_names:
            comp = model.components_of(name)
            comp.U.copy_(torch.from_numpy(store.U(name)))
            comp.V.copy_(torch.from_numpy(store.V(name)))
            if model.global_ci_fn is None:
                params = {k: torch.from_numpy(v) for k, v in store.ci_fn_params(name).items()}
                model.ci_fn_of(name).load_state_dict(params)
    if model.global_ci_fn is not None:
        _load_global_ci_fn(store, model.global_ci_fn)
    return model.to(device), config


def _load_global_ci_fn(store: FactorStore, fn: GlobalCIFunction) -> None:
    """The stored global CI function's parameters into `fn`, after checking that it was built
    for the same modules in the same order (its input and output blocks follow that order)."""
    stored = store.global_ci_fn()
    if stored is None:
        raise StoreError(
            f"{store.path}: the config's ci_fn_type is '{fn.fn_type}' but the store holds no "
            "global_ci_fn/ (the run did not write it)"
        )
    attrs, params = stored
    expected = fn.architecture()
    found = {k: attrs.get(k) for k in expected}
    if found != expected:
        raise StoreError(
            f"{store.path}: global_ci_fn/ was written for {found}, but the config builds {expected}"
        )
    fn.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
