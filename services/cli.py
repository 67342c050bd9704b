"""`spd`: the command-line entry point. Each subcommand lives in services/commands/."""

from __future__ import annotations

import argparse
import sys

from services.commands import data, decompose, inspect, query, serve

COMMANDS = {
    "decompose": decompose,
    "inspect": inspect,
    "data": data,
    "serve": serve,
    "query": query,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spd",
        description="Stochastic Parameter Decomposition: decompose a model's weights into "
        "rank-one subcomponents, store the factors in Zarr, and inspect them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
