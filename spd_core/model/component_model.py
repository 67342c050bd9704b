"""The frozen target wrapped with per-module components and causal-importance functions.

A training step makes one clean pass (caching each decomposed module's input and output), computes
causal importances from it, then runs masked forwards in which chosen modules are replaced by their
components. A module whose input in a masked forward is still the clean one (nothing upstream of it
is replaced) reuses the cached inner activations h = xV and the cached x Wᵀ, so it costs only the
(h ⊙ m) U product.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from spd_core.config import GLOBAL_CI_FN_TYPES, CITransformerConfig, Config, ModulePattern
from spd_core.model.ci_functions import make_ci_fn
from spd_core.model.components import Components, module_kind
from spd_core.model.global_ci_functions import GlobalCIFunction, make_global_ci_fn
from spd_core.model.masks import ModuleMask
from spd_core.model.sigmoids import SIGMOIDS
from spd_core.model.tied_components import check_ties, tie


class ModuleSelectionError(ValueError):
    """The config's module patterns do not select a valid set of modules."""


def select_modules(target: nn.Module, patterns: list[ModulePattern]) -> dict[str, int]:
    """Expand fnmatch patterns over `target.named_modules()` into {module name: C}."""
    named = dict(target.named_modules())
    chosen: dict[str, int] = {}
    for p in patterns:
        hits = [n for n in named if n and fnmatch.fnmatchcase(n, p.module_pattern)]
        if not hits:
            sample = ", ".join(n for n in list(named)[1:13] if n)
            raise ModuleSelectionError(
                f"module pattern '{p.module_pattern}' matched nothing; modules include: {sample}"
            )
        for name in hits:
            if name in chosen:
                raise ModuleSelectionError(f"module '{name}' is matched by more than one pattern")
            if module_kind(named[name]) is None:
                raise ModuleSelectionError(
                    f"module '{name}' matched by '{p.module_pattern}' is a "
                    f"{type(named[name]).__name__}; SPD decomposes nn.Linear, Conv1D and nn.Embedding"
                )
            chosen[name] = p.C
    return chosen


def extract_output(output: object, attr: str | None) -> Tensor:
    """The tensor to compare: raw output, an attribute (e.g. `logits`) or `idx_k` of a tuple."""
    if attr is None:
        return output  # type: ignore[return-value]
    if attr.startswith("idx_"):
        return output[int(attr[4:])]  # type: ignore[index]
    return getattr(output, attr)


@dataclass
class CleanPass:
    """The target's own forward on a batch: its output and every decomposed module's input and
    x Wᵀ (module output without bias), in the order the modules ran."""

    x: Tensor
    output: Tensor
    inputs: dict[str, Tensor]
    products: dict[str, Tensor]
    order: list[str]
    _nonzero: dict[str, Tensor] = field(default_factory=dict)

    def nonzero_positions(self, name: str) -> Tensor:
        """Bool per position (every dim but the last) of a floating-point module input: any
        entry non-zero. Computed once per module and pass."""
        if name not in self._nonzero:
            flat = self.inputs[name].reshape(-1, self.inputs[name].shape[-1])
            self._nonzero[name] = (flat.amax(-1) != 0) | (flat.amin(-1) != 0)
        return self._nonzero[name]

    def computed_nonzero_positions(self) -> dict[str, Tensor]:
        """The `nonzero_positions` computed so far, by module."""
        return dict(self._nonzero)


@dataclass
class CausalImportances:
    """g_lower (masks, L0) and g_upper (importance minimality), each {module: (…, C)}."""

    lower: dict[str, Tensor]
    upper: dict[str, Tensor]


@dataclass
class StepActivations:
    """A clean pass plus lazily computed inner activations h = xV (with gradient to V)."""

    model: ComponentModel
    clean: CleanPass
    _inner: dict[str, Tensor] = field(default_factory=dict)

    def inner(self, name: str) -> Tensor:
        if name not in self._inner:
            self._inner[name] = self.model.components_of(name).inner_acts(self.clean.inputs[name])
        return self._inner[name]


def _key(name: str) -> str:
    return name.replace(".", "-")


class ComponentModel(nn.Module):
    """Target model (frozen) + Components per decomposed module, and a CI function per module or
    one global CI function over all of them (`ci_fn_type` global_*)."""

    def __init__(
        self,
        target: nn.Module,
        module_info: list[ModulePattern],
        ci_fn_type: str = "vector_mlp",
        ci_fn_hidden_dims: list[int] | None = None,
        sigmoid_type: str = "leaky_hard",
        output_attr: str | None = None,
        generator: torch.Generator | None = None,
        compile_ci_fn: bool = False,
        tied_components: Sequence[tuple[str, str]] = (),
        ci_transformer: CITransformerConfig | None = None,
    ):
        super().__init__()
        target.requires_grad_(False)
        target.eval()
        self.target = target
        self.output_attr = output_attr
        self.ci_fn_type = ci_fn_type
        self.tied_components = [tuple(pair) for pair in tied_components]
        self.ci_fn_hidden_dims = list(ci_fn_hidden_dims if ci_fn_hidden_dims is not None else [8])
        self.sigmoid_type = sigmoid_type
        self.lower_sigmoid, self.upper_sigmoid = SIGMOIDS[sigmoid_type]
        modules = dict(target.named_modules())
        self.C = select_modules(target, module_info)
        self.module_names = list(self.C)
        self.components = nn.ModuleDict()
        self.ci_fns = nn.ModuleDict()
        is_global = ci_fn_type in GLOBAL_CI_FN_TYPES
        for name, C in self.C.items():
            comp = Components(modules[name], C, generator)
            if comp.kind == "embedding" and ci_fn_type != "mlp" and not is_global:
                raise ModuleSelectionError(
                    f"module '{name}' is an embedding: it needs ci_fn_type 'mlp' or a global one, "
                    f"not '{ci_fn_type}'"
                )
            self.components[_key(name)] = comp
            if not is_global:
                hidden = self.ci_fn_hidden_dims
                fn = make_ci_fn(ci_fn_type, C, comp.d_in, hidden, generator, compile_ci_fn)
                self.ci_fns[_key(name)] = fn.to(comp.V.device)
        self.global_ci_fn: GlobalCIFunction | None = None
        if is_global:  # an embedding reads its inner activations (C values), not token ids
            comps = self.components_by_name()
            d_in = {n: c.C if c.kind == "embedding" else c.d_in for n, c in comps.items()}
            fn = make_global_ci_fn(
                ci_fn_type, d_in, self.C, self.ci_fn_hidden_dims, ci_transformer, generator
            )
            self.global_ci_fn = fn.to(comps[self.module_names[0]].V.device)
        self._target_modules = {name: modules[name] for name in self.module_names}
        check_ties(self.components_by_name(), self.tied_components)
        tie(self.components_by_name(), self.tied_components)

    @classmethod
    def from_config(
        cls,
        target: nn.Module,
        config: Config,
        generator: torch.Generator | None = None,
        compile_ci_fn: bool = False,
    ) -> ComponentModel:
        """The components and CI functions `config` describes, around `target`."""
        return cls(
            target,
            config.module_info,
            ci_fn_type=config.ci_fn_type,
            ci_fn_hidden_dims=config.ci_fn_hidden_dims,
            ci_transformer=config.ci_transformer,
            sigmoid_type=config.sigmoid_type,
            output_attr=config.pretrained_model_output_attr,
            generator=generator,
            compile_ci_fn=compile_ci_fn,
            tied_components=config.tied_components,
        )

    def components_by_name(self) -> dict[str, Components]:
        """Every decomposed module's Components, by module name."""
        return {name: self.components_of(name) for name in self.module_names}

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> ComponentModel:
        """Moves and casts give every parameter new storage; tie the tied pairs again after."""
        super()._apply(fn, recurse)
        if self.tied_components:
            tie(self.components_by_name(), self.tied_components)
        return self

    def components_of(self, name: str) -> Components:
        return self.components[_key(name)]  # type: ignore[return-value]

    def ci_fn_of(self, name: str) -> nn.Module:
        return self.ci_fns[_key(name)]

    def component_parameters(self) -> list[nn.Parameter]:
        """Every U and V (not a frozen copy of a target weight, see `shard_target`)."""
        return [p for p in self.components.parameters() if p.requires_grad]

    def ci_parameters(self) -> list[nn.Parameter]:
        """Every CI-function parameter: the per-module functions' or the global one's."""
        fns = self.ci_fns if self.global_ci_fn is None else self.global_ci_fn
        return list(fns.parameters())

    def weight_deltas(self) -> dict[str, Tensor]:
        """Δ_l = W_l − W_comp,l for every module (differentiable)."""
        return {n: self.components_of(n).weight_delta() for n in self.module_names}

    # ---------------------------------------------------------------- clean pass and CI
    @torch.no_grad()
    def clean_pass(self, x: Tensor) -> CleanPass:
        """Run the target, caching each decomposed module's input and output minus bias."""
        inputs: dict[str, Tensor] = {}
        products: dict[str, Tensor] = {}
        order: list[str] = []

        def make_hook(name: str) -> Callable:
            def hook(module: nn.Module, args: tuple, kwargs: dict, output: Tensor) -> None:
                _check_single_input(name, args, kwargs)
                if name in inputs:
                    raise ModuleSelectionError(
                        f"module '{name}' ran more than once in one forward; SPD needs each "
                        "decomposed module to be called once"
                    )
                inputs[name] = args[0]
                bias = self.components_of(name).bias
                products[name] = output if bias is None else output - bias
                order.append(name)

            return hook

        handles = [
            m.register_forward_hook(make_hook(n), with_kwargs=True)
            for n, m in self._target_modules.items()
        ]
        try:
            output = extract_output(self.target(x), self.output_attr)
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in self.module_names if n not in inputs]
        if missing:
            raise ModuleSelectionError(f"modules never ran in the target's forward: {missing}")
        return CleanPass(x, output, inputs, products, order)

    def prepare(self, x: Tensor) -> StepActivations:
        """Clean pass for a batch, ready for CI and masked forwards."""
        return StepActivations(self, self.clean_pass(x))

    def causal_importances(
        self,
        acts: StepActivations,
        sampling: str = "continuous",
        generator: torch.Generator | None = None,
    ) -> CausalImportances:
        """g = σ(f_ci(input)) per module, computed from the clean pass (once per step); a global
        CI function gives every module's f_ci(input) from one call."""
        lower, upper = {}, {}
        pre_sigmoid = self._global_pre_sigmoid(acts) if self.global_ci_fn is not None else None
        for name in self.module_names:
            if pre_sigmoid is not None:
                z = pre_sigmoid[name]
            else:
                fn = self.ci_fn_of(name)
                inp = acts.inner(name) if fn.takes_inner_acts else acts.clean.inputs[name].float()
                z = _skipping_zero_inputs(fn, inp, acts.clean, name)
            upper[name] = self.upper_sigmoid(z)
            if sampling == "binomial":
                noise = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype)
                z = 1.05 * z - 0.05 * noise
            lower[name] = self.lower_sigmoid(z)
        return CausalImportances(lower, upper)

    def _global_pre_sigmoid(self, acts: StepActivations) -> dict[str, Tensor]:
        """The global function on every position. Unlike the per-module path, all-zero inputs
        are not skipped: a position's importances depend on every module's input there (and,
        for the transformer, on the other positions)."""
        assert self.global_ci_fn is not None
        inputs = {
            n: acts.inner(n)
            if self.components_of(n).kind == "embedding"
            else acts.clean.inputs[n].float()
            for n in self.module_names
        }
        return self.global_ci_fn(inputs)

    # ---------------------------------------------------------------- masked forwards
    def masked_forward(self, acts: StepActivations, masks: dict[str, ModuleMask]) -> Tensor:
        """Forward of the clean batch with the modules in `masks` replaced by their components."""
        if not masks:
            return acts.clean.output
        order = acts.clean.order
        first = min(masks, key=order.index)
        clean_input = set(order[: order.index(first) + 1])
        with self._replaced(acts, masks, clean_input):
            resume = getattr(self.target, "resume_from", None)
            out = resume(first, acts.clean.inputs) if resume is not None else None
            if out is None:
                out = self.target(acts.clean.x)
        return extract_output(out, self.output_attr)

    @contextmanager
    def _replaced(
        self, acts: StepActivations, masks: dict[str, ModuleMask], clean_input: set[str]
    ) -> Iterator[None]:
        saved = {}
        for name, mm in masks.items():
            module = self._target_modules[name]
            saved[name] = module.__dict__.get("forward")
            module.forward = self._replacement(name, module, acts, mm, name in clean_input)
        try:
            yield
        finally:
            for name, previous in saved.items():
                module = self._target_modules[name]
                if previous is None:
                    del module.forward
                else:
                    module.forward = previous

    def _replacement(
        self, name: str, module: nn.Module, acts: StepActivations, mm: ModuleMask, clean: bool
    ) -> Callable:
        comp = self.components_of(name)
        original = module.forward

        def forward(*args: Tensor, **kwargs: object) -> Tensor:
            _check_single_input(name, args, kwargs)
            x = args[0]
            inner = acts.inner(name) if clean else None
            product = acts.clean.products[name] if clean else None
            if mm.routing is None:
                return comp(x, mm.mask, mm.delta_mask, inner=inner, target_product=product)
            if clean:
                target_y = product if comp.bias is None else product + comp.bias
            else:
                target_y = original(x)
            if x.device.type == "cpu":  # bound by arithmetic: skip the unrouted positions' work
                return _on_routed_positions(comp, mm, x, inner, product, target_y)
            # a GPU step is bound by launches, not arithmetic: fewest ops, no host syncs
            y = comp(x, mm.mask, mm.delta_mask, inner=inner, target_product=product)
            return torch.where(mm.routing.unsqueeze(-1), y, target_y)

        return forward


def _skipping_zero_inputs(fn: nn.Module, inp: Tensor, clean: CleanPass, name: str) -> Tensor:
    """fn(inp), evaluated once for all positions whose module input is exactly zero.

    Sparse data (the toy models) leave most positions with an all-zero input; there h = xV = 0
    too, so every such position has the same CI and contributes no gradient to V. Computing it
    once gives identical values and gradients at a fraction of the cost.
    """
    if clean.inputs[name].is_floating_point():
        active = clean.nonzero_positions(name)
        n_active = int(active.sum())
        if n_active < 0.75 * active.numel():
            flat_in = inp.reshape(-1, inp.shape[-1])
            idx = active.nonzero().squeeze(-1)
            rows = torch.cat([flat_in[idx], flat_in.new_zeros(1, flat_in.shape[-1])])
            z_rows = fn(rows)
            z = z_rows[-1:].expand(flat_in.shape[0], -1).index_copy(0, idx, z_rows[:-1])
            return z.reshape(*inp.shape[:-1], z.shape[-1])
    return fn(inp)


def _check_single_input(name: str, args: tuple, kwargs: dict) -> None:
    if len(args) != 1 or kwargs:
        raise ModuleSelectionError(
            f"module '{name}' was called with {len(args)} positional and {len(kwargs)} keyword "
            "arguments; SPD replaces only modules called with one tensor"
        )


def _on_routed_positions(
    comp: Components,
    mm: ModuleMask,
    x: Tensor,
    inner: Tensor | None,
    product: Tensor | None,
    target_y: Tensor,
) -> Tensor:
    """The module's output under routing: the components' output at the routed positions,
    `target_y` elsewhere. The components run on the routed positions alone (a uniform-k subset
    routes about 5/8 of them per module of four), not on every position and then discarded."""
    routing = mm.routing
    assert routing is not None
    if bool(routing.all()):
        return comp(x, mm.mask, mm.delta_mask, inner=inner, target_product=product)
    rows = routing.reshape(-1).nonzero().squeeze(-1)
    positions = routing.dim()

    def take(t: Tensor | None, trailing: int) -> Tensor | None:
        """The routed rows of a per-position tensor (`trailing` dims after the positions); a
        tensor of any other shape is shared by every position and passes as it is."""
        if t is None or t.dim() != positions + trailing or t.shape[:positions] != routing.shape:
            return t
        return t.reshape(-1, *t.shape[positions:])[rows]

    y = comp(
        take(x, 1),
        take(mm.mask, 1),
        take(mm.delta_mask, 0),
        inner=take(inner, 1),
        target_product=take(product, 1),
    )
    flat = target_y.reshape(-1, target_y.shape[-1])
    return flat.index_copy(0, rows, y).reshape(target_y.shape)
