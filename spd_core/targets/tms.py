"""Toy Model of Superposition: y = ReLU(W2 H W1 x + b), trained tied (W2 = W1ᵀ), spec §7.2."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TMSModel(nn.Module):
    """`linear1` (n_features -> n_hidden), `hidden_layers` (n_hidden -> n_hidden), `linear2` + bias.

    With `identity_hidden=True` every hidden layer is fixed to the identity and frozen (the "-id"
    variants). Training uses `forward_tied` (linear2 weight = linear1.weightᵀ); `materialise_tied_`
    then copies that tie into `linear2.weight`, after which `forward` equals the tied model.
    """

    def __init__(
        self,
        n_features: int,
        n_hidden: int,
        n_hidden_layers: int = 0,
        identity_hidden: bool = False,
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_hidden = n_hidden
        self.identity_hidden = identity_hidden
        self.linear1 = nn.Linear(n_features, n_hidden, bias=False)
        self.hidden_layers = nn.ModuleList(
            nn.Linear(n_hidden, n_hidden, bias=False) for _ in range(n_hidden_layers)
        )
        self.linear2 = nn.Linear(n_hidden, n_features, bias=True)
        if identity_hidden:
            for layer in self.hidden_layers:
                with torch.no_grad():
                    layer.weight.copy_(torch.eye(n_hidden))
                layer.weight.requires_grad_(False)

    def _hidden(self, x: Tensor) -> Tensor:
        h = self.linear1(x)
        for layer in self.hidden_layers:
            h = layer(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """(..., n_features) -> (..., n_features), using linear2's own weight."""
        return F.relu(self.linear2(self._hidden(x)))

    def forward_tied(self, x: Tensor) -> Tensor:
        """Training-time forward with W2 = W1ᵀ (linear2.weight is not used)."""
        return F.relu(F.linear(self._hidden(x), self.linear1.weight.T, self.linear2.bias))

    @torch.no_grad()
    def materialise_tied_(self) -> None:
        """Set linear2.weight (its own Parameter) to linear1.weightᵀ, ending the tie."""
        self.linear2.weight.copy_(self.linear1.weight.T)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of tied training: W1, trainable hidden layers, b (not linear2.weight)."""
        params = [self.linear1.weight, self.linear2.bias]
        params += [p for layer in self.hidden_layers for p in layer.parameters() if p.requires_grad]
        return params
