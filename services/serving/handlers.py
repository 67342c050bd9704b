"""Request -> response for every RPC, as plain functions of a Catalog (no Ray, no gRPC server).

The Serve deployment adds authentication, error mapping and batching around these.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from services.serving import validation
from services.serving.catalog import Catalog
from services.serving.errors import exhausted, invalid
from services.serving.importance_selection import Selection, select
from services.serving.limits import Limits
from services.serving.text_inputs import request_input
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.tensor_codec import dtype_code, to_proto
from spd_core.queries import AblationResult, ablated_outputs, importances
from spd_core.text.tokens import top_next_tokens

_DIVERGENCE = {"mse": pb.DIVERGENCE_MSE, "kl": pb.DIVERGENCE_KL}


@dataclass
class ImportanceJob:
    """A validated ComputeImportances request, ready to be batched with others."""

    decomposition: str
    inputs: Tensor
    kind: str
    modules: list[str]
    selection: Selection
    tokens: pb.Tokens | None = None
    """Language models: the sequence's tokens (inputs are then token ids (1, seq))."""


class QueryHandlers:
    """Answers for the decompositions in `catalog` within `limits`."""

    def __init__(self, catalog: Catalog, limits: Limits) -> None:
        self.catalog = catalog
        self.limits = limits

    # ------------------------------------------------------------------ decompositions
    def describe(self, name: str, full: bool) -> pb.Decomposition:
        """A Decomposition message; `full` adds the config and the metrics."""
        store = self.catalog.store(name)
        signature = self.catalog.signature(name)
        metrics = store.metrics
        config = store.config
        target = config.get("target") or {}
        message = pb.Decomposition(
            name=name,
            store_path=str(store.path),
            target=str(target.get("name") or target.get("model") or ""),
            output_loss_type=str(config.get("output_loss_type", "mse")),
        )
        if signature is not None:
            message.input_shape.extend(signature.input_shape)
            message.input_dtype = dtype_code(
                torch.empty(0, dtype=signature.input_dtype).numpy().dtype
            )
            message.output_shape.extend(signature.output_shape)
        else:
            spec = store.target_spec
            message.text_model = True
            message.input_dtype = dtype_code(np.dtype(np.int64))
            message.context_length = int(spec.get("context_length") or 0)
            message.vocab_size = int(spec.get("vocab_size") or 0)
            message.causal_lm = bool(spec.get("causal_lm"))
        for module, layout in store.modules.items():
            alive = metrics.get(f"alive/{module}")
            l0 = metrics.get(f"l0/{module}")
            message.modules.append(
                pb.Module(
                    name=module,
                    kind=layout.kind,
                    c=layout.C,
                    d_in=layout.d_in,
                    d_out=layout.d_out,
                    alive=int(alive) if isinstance(alive, int | float) else -1,
                    l0=float(l0) if isinstance(l0, int | float) else math.nan,
                )
            )
        if full:
            message.config_json = json.dumps(config, sort_keys=True)
            for key, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    message.metrics[key] = float(value)
        return message

    def list_decompositions(
        self, request: pb.ListDecompositionsRequest
    ) -> pb.ListDecompositionsResponse:
        return pb.ListDecompositionsResponse(
            decompositions=[self.describe(name, full=False) for name in self.catalog.names]
        )

    def get_decomposition(self, request: pb.GetDecompositionRequest) -> pb.Decomposition:
        return self.describe(request.name, full=True)

    # ------------------------------------------------------------------ importances
    def importance_job(
        self, request: pb.ComputeImportancesRequest, max_inputs: int, hint: str
    ) -> ImportanceJob:
        """Validate a request (and load its model) before it joins a batch."""
        name = request.decomposition
        store = self.catalog.store(name)
        chosen = validation.modules(request.modules, list(store.modules), name)
        inputs, tokens = request_input(request, self.catalog, max_inputs, hint)
        job = ImportanceJob(
            decomposition=name,
            inputs=inputs,
            kind=validation.importance_kind(request.kind),
            modules=chosen,
            selection=validation.selection(request.selection),
            tokens=tokens,
        )
        self.catalog.load(name)
        return job

    def compute(self, jobs: list[ImportanceJob]) -> list[dict[str, Tensor]]:
        """Importances of every job; jobs on the same decomposition and kind (and, for token
        sequences, length) run as one batch."""
        results: list[dict[str, Tensor]] = [{} for _ in jobs]
        groups: dict[tuple[str, str, tuple[int, ...]], list[int]] = {}
        for i, job in enumerate(jobs):
            key = (job.decomposition, job.kind, tuple(job.inputs.shape[1:]))
            groups.setdefault(key, []).append(i)
        for (name, kind, _), members in groups.items():
            model = self.catalog.load(name).model
            batch = torch.cat([jobs[i].inputs for i in members])
            ci = importances(model, batch, kind)  # type: ignore[arg-type]
            sizes = [len(jobs[i].inputs) for i in members]
            split = {module: values.split(sizes) for module, values in ci.items()}
            for j, i in enumerate(members):
                results[i] = {module: split[module][j] for module in jobs[i].modules}
        return results

    @staticmethod
    def module_importances(job: ImportanceJob, ci: dict[str, Tensor]) -> list[pb.ModuleImportances]:
        """The requested view (dense, top-k, threshold) of each requested module; for a token
        sequence, one row per token."""
        out = []
        for module in job.modules:
            rows = ci[module][0] if job.tokens is not None else ci[module]
            values, indices = select(rows, job.selection)
            entry = pb.ModuleImportances(module=module, values=to_proto(values))
            if indices is not None:
                entry.indices.CopyFrom(to_proto(indices.astype(np.int64)))
            out.append(entry)
        return out

    def importances_response(
        self, job: ImportanceJob, ci: dict[str, Tensor]
    ) -> pb.ComputeImportancesResponse:
        """The response to `job` given its importances (with the tokens of a sequence)."""
        response = pb.ComputeImportancesResponse(importances=self.module_importances(job, ci))
        if job.tokens is not None:
            response.tokens.CopyFrom(job.tokens)
        return response

    def stream(self, request: pb.StreamImportancesRequest) -> Iterator[pb.ImportancesChunk]:
        """Validate the whole request, then compute and yield it chunk by chunk."""
        if request.chunk_size < 0:
            raise invalid(f"chunk_size must be >= 0, got {request.chunk_size}")
        chunk = request.chunk_size or self.limits.default_chunk_size
        job = self.importance_job(
            request.request,
            self.limits.max_stream_inputs,
            "split the inputs over several streams",
        )
        for start in range(0, len(job.inputs), chunk):
            part = ImportanceJob(
                job.decomposition,
                job.inputs[start : start + chunk],
                job.kind,
                job.modules,
                job.selection,
                job.tokens,
            )
            (ci,) = self.compute([part])
            yield pb.ImportancesChunk(
                start=start,
                stop=start + len(part.inputs),
                importances=self.module_importances(part, ci),
            )

    # ------------------------------------------------------------------ ablation
    def ablate(self, request: pb.AblateRequest) -> pb.AblateResponse:
        name = request.decomposition
        store = self.catalog.store(name)
        signature = self.catalog.signature(name)
        x, tokens = request_input(
            request, self.catalog, self.limits.max_inputs, "split the batch over several requests"
        )
        # a token sequence's answer grows with its length (the hidden size is not known here)
        out_size = math.prod(signature.output_shape) if signature else x.shape[-1]
        module_C = {m: layout.C for m, layout in store.modules.items()}
        spec = validation.mask_spec(request, module_C, len(x), out_size, self.limits)
        causal = tokens is not None and bool(store.target_spec.get("causal_lm"))
        k = validation.top_k_tokens(
            request.top_k_tokens, int(store.target_spec.get("vocab_size", 0))
        )
        loaded = self.catalog.load(name)
        loss = validation.divergence(request.divergence, loaded.config.output_loss_type)
        result = ablated_outputs(loaded.model, x, spec, loss)  # type: ignore[arg-type]
        response = pb.AblateResponse(
            divergence=to_proto(result.divergence.numpy()), divergence_type=_DIVERGENCE[loss]
        )
        if tokens is not None:
            response.tokens.CopyFrom(tokens)
        if result.position_divergence is not None:
            response.position_divergence.CopyFrom(to_proto(result.position_divergence.numpy()))
        if causal:
            _add_next_tokens(response, result, loaded.tokenizer, k)
        else:
            response.outputs.CopyFrom(to_proto(result.outputs.numpy()))
            response.target_output.CopyFrom(to_proto(result.target.numpy()))
        return response

    # ------------------------------------------------------------------ factors
    def get_components(self, request: pb.GetComponentsRequest) -> pb.GetComponentsResponse:
        name = request.decomposition
        store = self.catalog.store(name)
        (module,) = validation.modules([request.module], list(store.modules), name)
        C = store.modules[module].C
        chosen = validation.components(request.components, C, module) or list(range(C))
        if len(chosen) > self.limits.max_components:
            raise exhausted(
                f"{len(chosen)} components exceed this server's limit of "
                f"{self.limits.max_components} per request; ask for fewer"
            )
        return pb.GetComponentsResponse(
            components=to_proto(np.asarray(chosen, dtype=np.int64)),
            u=to_proto(store.U(module, chosen).astype(np.float32)),
            v=to_proto(store.V(module, chosen).astype(np.float32)),
        )


def next_tokens(logits: Tensor, tokenizer: Any, k: int) -> pb.NextTokens:
    """The k most probable next tokens of one position's logits (vocab,)."""
    top = top_next_tokens(logits, tokenizer, k)
    return pb.NextTokens(
        ids=[i for i, _, _ in top], strings=[t for _, t, _ in top], probs=[p for _, _, p in top]
    )


def _add_next_tokens(
    response: pb.AblateResponse, result: AblationResult, tokenizer: Any, k: int
) -> None:
    """Next-token distributions at the last position: per masked sample, and the target's."""
    for sample in result.outputs:
        response.next_tokens.append(next_tokens(sample[0, -1], tokenizer, k))
    response.target_next_tokens.CopyFrom(next_tokens(result.target[0, -1], tokenizer, k))
