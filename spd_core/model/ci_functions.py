"""Causal-importance functions: map a module's input to one raw importance per subcomponent.

- `mlp` (the paper's): per subcomponent an MLP 1 → h… → 1 on its own inner activation h_c(x).
- `vector_mlp`: per subcomponent an MLP d_in → h… → 1 on the module's whole input x.
- `shared_mlp`: one MLP d_in → h… → C on x, shared by the components of the module.
Hidden layers use GELU; weights ~ N(0, gain²/fan_in) with gain √2 for hidden and 1 for the
output layer; biases zero.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spd_core.model.ci_mlp_compiled import compiled_per_component_gelu_mlp
from spd_core.model.ci_mlp_kernel import per_component_gelu_mlp

CIFnType = Literal["mlp", "vector_mlp", "shared_mlp"]


def _normal(
    shape: tuple[int, ...], fan_in: int, gain: float, gen: torch.Generator | None
) -> Tensor:
    return torch.randn(*shape, generator=gen) * (gain / math.sqrt(fan_in))


class ParallelMLP(nn.Module):
    """C independent MLPs; input (…, C, d) or (…, d) broadcast to every component; output (…, C).

    `compiled` runs the paper's `mlp` shape (scalar input, one hidden layer) on the
    torch.compile'd kernels of `ci_mlp_compiled` instead of the eager fused op.
    """

    def __init__(
        self,
        C: int,
        d_in: int,
        hidden: list[int],
        gen: torch.Generator | None = None,
        compiled: bool = False,
    ):
        super().__init__()
        dims = [d_in, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            gain = 1.0 if i == len(dims) - 2 else math.sqrt(2.0)
            self.weights.append(nn.Parameter(_normal((C, a, b), a, gain, gen)))
            self.biases.append(nn.Parameter(torch.zeros(C, b)))
        self.C, self.d_in = C, d_in
        self.fused_op = compiled_per_component_gelu_mlp if compiled else per_component_gelu_mlp

    def forward(self, x: Tensor, shared_input: bool) -> Tensor:
        n = len(self.weights)
        if n == 2 and self.d_in == 1 and not shared_input:  # the paper's `mlp`: one fused op
            (w1, w2), (b1, b2) = self.weights, self.biases
            # float32 math even under autocast: the fused backward mixes its saved tensors with
            # the incoming gradient, which must share one dtype
            with torch.autocast(x.device.type, enabled=False):
                return self.fused_op(x.float(), w1[:, 0, :], b1, w2[:, :, 0], b2[:, 0])
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            last = i == n - 1
            if i == 0 and shared_input:
                # (…, d) @ (d, C·h) in one matmul
                out = (h @ w.permute(1, 0, 2).reshape(self.d_in, -1)).unflatten(-1, w.shape[::2])
            elif i == 0 and self.d_in == 1:
                out = h.unsqueeze(-1) * w[:, 0, :]
            elif last:  # width-1 output: a dot product per component, (…, C) directly
                return (h * w[:, :, 0]).sum(-1) + b[:, 0]
            else:
                out = torch.einsum("...ci,cio->...co", h, w)
            h = out + b
            if not last:
                h = F.gelu(h)
        # no hidden layer: (…, C, 1); a copy, because FSDP must not see a view as the output
        return h.squeeze(-1).clone()


class PerComponentMLP(nn.Module):
    """`mlp`: input is the inner activation h(x) (…, C)."""

    takes_inner_acts = True

    def __init__(
        self,
        C: int,
        d_in: int,
        hidden: list[int],
        gen: torch.Generator | None = None,
        compiled: bool = False,
    ):
        super().__init__()
        self.net = ParallelMLP(C, 1, hidden, gen, compiled)

    def forward(self, inner: Tensor) -> Tensor:
        return self.net(inner, shared_input=False)


class VectorMLP(nn.Module):
    """`vector_mlp`: input is the module input x (…, d_in)."""

    takes_inner_acts = False

    def __init__(self, C: int, d_in: int, hidden: list[int], gen: torch.Generator | None = None):
        super().__init__()
        self.net = ParallelMLP(C, d_in, hidden, gen)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, shared_input=True)


class SharedMLP(nn.Module):
    """`shared_mlp`: one MLP x (…, d_in) → (…, C); no hidden layers means one linear map."""

    takes_inner_acts = False

    def __init__(self, C: int, d_in: int, hidden: list[int], gen: torch.Generator | None = None):
        super().__init__()
        dims = [d_in, *hidden, C]
        self.layers = nn.ModuleList()
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layer = nn.Linear(a, b)
            gain = 1.0 if i == len(dims) - 2 else math.sqrt(2.0)
            with torch.no_grad():
                layer.weight.copy_(_normal((b, a), a, gain, gen))
                layer.bias.zero_()
            self.layers.append(layer)

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.gelu(x)
        return x


CI_FN_CLASSES: dict[str, type[nn.Module]] = {
    "mlp": PerComponentMLP,
    "vector_mlp": VectorMLP,
    "shared_mlp": SharedMLP,
}


def make_ci_fn(
    fn_type: CIFnType,
    C: int,
    d_in: int,
    hidden: list[int],
    gen: torch.Generator | None = None,
    compiled: bool = False,
) -> nn.Module:
    """Build one module's CI function; embeddings (integer inputs) must use `mlp`.

    `compiled` (only for `mlp` with one hidden layer) selects the torch.compile'd kernels.
    """
    if not compiled:
        return CI_FN_CLASSES[fn_type](C, d_in, hidden, gen)
    if fn_type != "mlp" or len(hidden) != 1:
        raise ValueError(
            "compiled CI functions exist only for ci_fn_type 'mlp' with one hidden layer"
        )
    return PerComponentMLP(C, d_in, hidden, gen, compiled=True)
