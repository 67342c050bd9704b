"""`/`: every served decomposition with its target, kind, modules (C, alive, L0) and harvest."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from services.explorer.rpc import Rpc, RpcRefused
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb


@dataclass(frozen=True)
class ModuleRow:
    name: str
    c: int
    alive: int | None
    l0: float | None


@dataclass(frozen=True)
class DecompositionRow:
    name: str
    target: str
    kind: str
    modules: list[ModuleRow]
    harvested: bool
    """Whether the store has a complete harvest (the component table needs one)."""


def module_rows(decomposition: pb.Decomposition) -> list[ModuleRow]:
    return [
        ModuleRow(
            m.name,
            m.c,
            m.alive if m.alive >= 0 else None,
            None if math.isnan(m.l0) else m.l0,
        )
        for m in decomposition.modules
    ]


async def harvested(rpc: Rpc, name: str) -> bool:
    """Whether `name` has a complete harvest (ListComponents answers rather than refusing)."""
    try:
        await rpc.call("ListComponents", hpb.ListComponentsRequest(decomposition=name, page_size=1))
    except RpcRefused as err:
        if err.code == grpc.StatusCode.FAILED_PRECONDITION:
            return False
        raise
    return True


async def home(rpc: Rpc) -> dict:
    listing = await rpc.call("ListDecompositions", pb.ListDecompositionsRequest())
    rows = [
        DecompositionRow(
            d.name,
            d.target,
            "language model" if d.text_model else "toy",
            module_rows(d),
            await harvested(rpc, d.name),
        )
        for d in listing.decompositions
    ]
    return {"decompositions": rows}
