"""Request -> response for every RPC, as plain functions of a Catalog (no Ray, no gRPC server).

The Serve deployment adds authentication, error mapping and batching around these.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from services.generated.spd.v1 import decomposition_service_pb2 as pb
from services.serving import validation
from services.serving.catalog import Catalog
from services.serving.errors import exhausted, invalid
from services.serving.importance_selection import Selection, select
from services.serving.limits import Limits
from services.serving.tensor_codec import dtype_code, to_proto
from spd_core.queries import ablated_outputs, importances

_DIVERGENCE = {"mse": pb.DIVERGENCE_MSE, "kl": pb.DIVERGENCE_KL}


@dataclass
class ImportanceJob:
    """A validated ComputeImportances request, ready to be batched with others."""

    decomposition: str
    inputs: Tensor
    kind: str
    modules: list[str]
    selection: Selection


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
        message = pb.Decomposition(
            name=name,
            store_path=str(store.path),
            target=str((config.get("target") or {}).get("name", "")),
            input_shape=list(signature.input_shape),
            input_dtype=dtype_code(torch.empty(0, dtype=signature.input_dtype).numpy().dtype),
            output_shape=list(signature.output_shape),
            output_loss_type=str(config.get("output_loss_type", "mse")),
        )
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
        job = ImportanceJob(
            decomposition=name,
            inputs=validation.decode_inputs(
                request.inputs,
                request.HasField("inputs"),
                self.catalog.signature(name),
                max_inputs,
                hint,
            ),
            kind=validation.importance_kind(request.kind),
            modules=chosen,
            selection=validation.selection(request.selection),
        )
        self.catalog.load(name)
        return job

    def compute(self, jobs: list[ImportanceJob]) -> list[dict[str, Tensor]]:
        """Importances of every job; jobs on the same decomposition and kind run as one batch."""
        results: list[dict[str, Tensor]] = [{} for _ in jobs]
        groups: dict[tuple[str, str], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.decomposition, job.kind), []).append(i)
        for (name, kind), members in groups.items():
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
        """The requested view (dense, top-k, threshold) of each requested module."""
        out = []
        for module in job.modules:
            values, indices = select(ci[module], job.selection)
            entry = pb.ModuleImportances(module=module, values=to_proto(values))
            if indices is not None:
                entry.indices.CopyFrom(to_proto(indices.astype(np.int64)))
            out.append(entry)
        return out

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
        x = validation.decode_inputs(
            request.inputs,
            request.HasField("inputs"),
            signature,
            self.limits.max_inputs,
            "split the batch over several requests",
        )
        module_C = {m: layout.C for m, layout in store.modules.items()}
        spec = validation.mask_spec(
            request, module_C, len(x), math.prod(signature.output_shape), self.limits
        )
        loaded = self.catalog.load(name)
        loss = validation.divergence(request.divergence, loaded.config.output_loss_type)
        result = ablated_outputs(loaded.model, x, spec, loss)  # type: ignore[arg-type]
        return pb.AblateResponse(
            outputs=to_proto(result.outputs.numpy()),
            target_output=to_proto(result.target.numpy()),
            divergence=to_proto(result.divergence.numpy()),
            divergence_type=_DIVERGENCE[loss],
        )

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
