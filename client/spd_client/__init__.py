"""Python client of the spd query service (gRPC `spd.v1`): numpy in, numpy out.

Needs only grpcio, protobuf and numpy, so a pipeline that queries a server installs no torch or
Ray: `pip install ./client`.

    from spd_client import Client

    with Client("127.0.0.1:50051") as client:
        ci = client.compute_importances("tms-5-2", x.astype("float32"), top_k=2)
"""

from spd_client.client import AsyncClient, Client
from spd_client.messages import (
    Ablation,
    AttributionGraph,
    AttributionNode,
    ComponentPage,
    Components,
    ComponentStat,
    ComponentSummary,
    Importances,
    ImportancesChunk,
    Interpretation,
    TextAblation,
    TextImportances,
)

__all__ = [
    "Ablation",
    "AsyncClient",
    "AttributionGraph",
    "AttributionNode",
    "Client",
    "ComponentPage",
    "ComponentStat",
    "ComponentSummary",
    "Components",
    "Importances",
    "ImportancesChunk",
    "Interpretation",
    "TextAblation",
    "TextImportances",
]
