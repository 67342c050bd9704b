"""`spd harvest STORE`: every component's dataset-scale statistics, as a Ray job, into the store."""

from __future__ import annotations

import argparse
import sys

from services.commands.store_location import add_storage_options, store_location
from services.harvest.checkpoints import CheckpointError
from services.harvest.job import plan_harvest, run_harvest
from services.ray_cluster import ClusterError
from spd_core.harvest import HarvestInputError
from spd_core.store import StoreError
from spd_core.text.corpora import CorpusError

DESCRIPTION = """\
Stream inputs through a finished decomposition and store, for every component of every module:
how often it fires (lower CI above the decomposition's ci_alive_threshold) and its mean CI when
it does, a CI histogram, its top-K examples (input or window, position, CI; text around them for
language models), the components it fires with (same module and other modules), and for models
over tokens the input tokens it fires on (top by precision and by recall) and, for causal language
models, the next-token logits that move most when it alone is ablated on its top examples.

Inputs: the train split of the decomposition's corpus, in corpus order (text models), or the toy
target's data generator (seeded per shard). The work is cut into shards of --shard-size inputs,
run by at most --workers Ray Data tasks at a time; each finished shard is a checkpoint file
(in STORE.harvest-checkpoints unless --checkpoint-dir), and --resume continues a stopped harvest
with the same options. The result goes under harvest/ in the store, marked complete last; the
decomposition is never changed. docs/harvest.md defines every statistic.
`spd inspect STORE --component MODULE:INDEX`, `spd query summary` and `spd query list-components`
read it.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "harvest",
        help="compute every component's statistics over a dataset (Ray job) into the store",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "store", metavar="STORE", help="path or URL (s3://…, gs://…) of a complete .zarr store"
    )
    amount = p.add_mutually_exclusive_group()
    amount.add_argument(
        "--tokens", type=int, help="tokens to read (models over token sequences; whole windows)"
    )
    amount.add_argument(
        "--inputs",
        type=int,
        help="inputs (windows, for text) to read (default: text 1024, toys 16384)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="Ray Data tasks at a time, 1 CPU each (default 1)"
    )
    p.add_argument(
        "--address", help="Ray cluster to join (default $RAY_ADDRESS, else an embedded local Ray)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue a stopped harvest (same options)"
    )
    p.add_argument(
        "--checkpoint-dir",
        help="folder (path or URL) for the shards' checkpoints (default "
        "STORE.harvest-checkpoints, beside the store: on the same object store for a URL store)",
    )
    add_storage_options(p)
    p.add_argument(
        "--top-k", type=int, default=20, help="top examples kept per component (default 20)"
    )
    p.add_argument("--shard-size", type=int, default=256, help="inputs per shard (default 256)")
    p.add_argument("--batch-size", type=int, default=32, help="inputs per forward (default 32)")


def _fail(message: str) -> int:
    print(f"spd harvest: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        return _fail(f"--workers must be >= 1, got {args.workers}")
    settings = {"top_k": args.top_k, "shard_size": args.shard_size, "batch_size": args.batch_size}
    try:
        store = store_location(args.store, args)
        if args.checkpoint_dir:
            store_location(args.checkpoint_dir, args)
        plan = plan_harvest(
            store,
            tokens=args.tokens,
            inputs=args.inputs,
            settings=settings,
            checkpoint_dir=args.checkpoint_dir,
            resume=args.resume,
        )
        result = run_harvest(plan, workers=args.workers, address=args.address)
    except (
        StoreError,
        HarvestInputError,
        CheckpointError,
        ClusterError,
        CorpusError,
        ValueError,
    ) as err:
        return _fail(str(err))
    a = result.attrs
    amount = a["n_positions"]
    if a["input_kind"] == "vectors":
        unit, what = "inputs", f"{amount:,} inputs"
    else:
        unit, what = "tokens", f"{amount:,} tokens ({a['n_inputs']:,} windows)"
    print(
        f"harvested {what} of {args.store} in {a['seconds']:.1f} s "
        f"({amount / a['seconds']:,.0f} {unit}/s, {args.workers} worker(s)); stored under harvest/"
    )
    return 0
