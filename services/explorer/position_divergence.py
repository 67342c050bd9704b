"""The divergence of an Ablate answer from the target's at each token position, for the prompt
playground. Ablate's `divergence` is the mean over a sequence's positions, and a causal LM's
answer carries only its next tokens, so for those the playground runs the request's masked
forward once more here, with the same input, masks and divergence as `QueryHandlers.ablate`
(call it after the RPC has accepted the request: this checks nothing the RPC did not)."""

from __future__ import annotations

import numpy as np
import torch

from services.serving import validation
from services.serving.handlers import QueryHandlers
from services.serving.text_inputs import request_input
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_core.losses.divergence import OutputLossType, per_example_divergence
from spd_core.queries import ablated_outputs

DIVERGENCE_NAMES: dict[int, OutputLossType] = {pb.DIVERGENCE_MSE: "mse", pb.DIVERGENCE_KL: "kl"}


def by_position(outputs: np.ndarray, target: np.ndarray, loss: OutputLossType) -> np.ndarray:
    """(S, positions): the divergence of each sample's output (S, 1, positions, ...) from the
    target's (1, positions, ...) at each position; its mean over positions is Ablate's."""
    target_rows = torch.from_numpy(np.ascontiguousarray(target[0]))
    return np.stack(
        [
            per_example_divergence(torch.from_numpy(np.ascontiguousarray(o[0])), target_rows, loss)
            .numpy()
            .reshape(-1)
            for o in outputs
        ]
    )


def causal_lm_by_position(handlers: QueryHandlers, request: pb.AblateRequest) -> np.ndarray:
    """(S, tokens): `request`'s divergence at each token of a causal LM's sequence."""
    name = request.decomposition
    store = handlers.catalog.store(name)
    x, _ = request_input(request, handlers.catalog, handlers.limits.max_inputs, "")
    module_C = {m: layout.C for m, layout in store.modules.items()}
    spec = validation.mask_spec(request, module_C, len(x), x.shape[-1], handlers.limits)
    loaded = handlers.catalog.load(name)
    loss = validation.divergence(request.divergence, loaded.config.output_loss_type)
    result = ablated_outputs(loaded.model, x, spec, loss)  # type: ignore[arg-type]
    return by_position(result.outputs.numpy(), result.target.numpy(), loss)  # type: ignore[arg-type]
