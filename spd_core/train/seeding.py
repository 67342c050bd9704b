"""Random streams of a run: identical model init on every rank, distinct noise per rank."""

import torch

STREAMS = {"init": 0, "data": 1, "masks": 2, "eval": 3, "persistent_pgd": 4}


def generator(
    seed: int, stream: str, device: torch.device, rank: int = 0, world_size: int = 1
) -> torch.Generator:
    """A generator for one stream; `init` ignores the rank so all ranks build the same model."""
    offset = 0 if stream == "init" else rank
    g = torch.Generator(device=device)
    g.manual_seed((seed * world_size + offset) * 16 + STREAMS[stream])
    return g
