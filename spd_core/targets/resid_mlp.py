"""Residual MLP target: r = x W_E; r += mlp_out(ReLU(mlp_in(r))) per layer; y = r W_U (§7.3)."""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPBlock(nn.Module):
    """One residual MLP layer without biases; returns the update added to the residual stream."""

    def __init__(self, d_embed: int, d_mlp: int) -> None:
        super().__init__()
        self.mlp_in = nn.Linear(d_embed, d_mlp, bias=False)
        self.mlp_out = nn.Linear(d_mlp, d_embed, bias=False)

    def forward(self, resid: Tensor) -> Tensor:
        return self.mlp_out(F.relu(self.mlp_in(resid)))


def random_unit_embedding(
    n_features: int, d_embed: int, generator: torch.Generator | None = None
) -> Tensor:
    """(n_features, d_embed) Gaussian rows normalised to unit norm."""
    w = torch.randn(n_features, d_embed, generator=generator)
    return w / w.norm(dim=1, keepdim=True)


class ResidualMLP(nn.Module):
    """Residual MLP with a fixed random embedding `W_E` and unembedding `W_U = W_Eᵀ` (frozen)."""

    def __init__(self, n_features: int, d_embed: int, d_mlp: int, n_layers: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.d_embed = d_embed
        self.d_mlp = d_mlp
        w_e = random_unit_embedding(n_features, d_embed)
        self.W_E = nn.Parameter(w_e, requires_grad=False)
        self.W_U = nn.Parameter(w_e.T.clone(), requires_grad=False)
        self.layers = nn.ModuleList(MLPBlock(d_embed, d_mlp) for _ in range(n_layers))

    @torch.no_grad()
    def set_embedding_(self, w_e: Tensor) -> None:
        """Set W_E to `w_e` (n_features, d_embed) and W_U to its transpose."""
        self.W_E.copy_(w_e)
        self.W_U.copy_(w_e.T)

    def forward(self, x: Tensor) -> Tensor:
        """(..., n_features) -> (..., n_features)."""
        return self.forward_from_layer(0, x @ self.W_E)

    def forward_from_layer(self, layer: int, resid: Tensor) -> Tensor:
        """Run layers `layer..end` and the unembedding on `resid` (..., d_embed), the residual
        stream at the start of `layer`; `forward_from_layer(0, x @ W_E) == forward(x)`."""
        if not 0 <= layer <= len(self.layers):
            raise ValueError(f"layer must be in [0, {len(self.layers)}], got {layer}")
        for block in self.layers[layer:]:
            resid = resid + block(resid)
        return resid @ self.W_U

    @torch.no_grad()
    def layer_shares(self, scale: float = 0.75) -> Tensor:
        """(n_layers, n_features): how far the output on the one-hot input `scale · e_i` moves when
        one layer is skipped, over the sum of those moves across layers. A feature with a small
        share in a layer is one that layer barely computes."""
        x = torch.eye(self.n_features, device=self.W_E.device) * scale
        full = self(x)
        moves = []
        for skipped in range(len(self.layers)):
            resid = x @ self.W_E
            for i, block in enumerate(self.layers):
                if i != skipped:
                    resid = resid + block(resid)
            moves.append((full - resid @ self.W_U).norm(dim=-1))
        stacked = torch.stack(moves)
        return stacked / stacked.sum(0, keepdim=True)

    def resume_from(self, module_name: str, clean_inputs: Mapping[str, Tensor]) -> Tensor | None:
        """Forward from the block holding `module_name`, starting at that block's clean residual
        stream (the cached input of its `mlp_in`); None when that input was not cached. Lets a
        masked forward skip recomputing the embedding and earlier blocks."""
        parts = module_name.split(".")
        if len(parts) < 2 or parts[0] != "layers" or not parts[1].isdigit():
            return None
        resid = clean_inputs.get(f"layers.{parts[1]}.mlp_in")
        return None if resid is None else self.forward_from_layer(int(parts[1]), resid)
