"""How much one request may ask of a server (beyond these: RESOURCE_EXHAUSTED)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-request limits of the query service."""

    max_inputs: int = 4096
    """Inputs in one ComputeImportances or Ablate request."""
    max_stream_inputs: int = 262_144
    """Inputs in one StreamImportances request."""
    default_chunk_size: int = 1024
    """Inputs per streamed chunk when the request leaves chunk_size at 0."""
    max_samples: int = 64
    """Stochastic mask samples in one Ablate request."""
    max_output_elements: int = 16_777_216
    """Elements of Ablate's outputs tensor (samples x inputs x output size)."""
    max_components: int = 65_536
    """Rows of U and V in one GetComponents request."""
    max_context_windows: int = 512
    """Held-out windows one GetComponentContexts request may search."""
    max_page_size: int = 10_000
    """Components in one ListComponents page."""
    max_attribution_edges: int = 4_000_000
    """Edges one ComputeAttributions stream may carry (after pruning)."""
    default_edges_per_chunk: int = 16_384
    """Edges per ComputeAttributions message when the request leaves edges_per_chunk at 0."""
