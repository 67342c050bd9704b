"""`spd`: the command-line entry point. Each subcommand lives in services/commands/."""

from __future__ import annotations

import argparse
import os
import sys

from services.commands import (
    autointerp,
    data,
    decompose,
    export,
    harvest,
    inspect,
    query,
    serve,
    verify,
)
from spd_core.extras import MissingExtraError, missing_extra_message

COMMANDS = {
    "decompose": decompose,
    "harvest": harvest,
    "autointerp": autointerp,
    "inspect": inspect,
    "verify": verify,
    "export": export,
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
    try:
        return COMMANDS[args.command].run(args)
    except ModuleNotFoundError as err:  # an optional extra is missing: say which, in one line
        message = (
            str(err) if isinstance(err, MissingExtraError) else missing_extra_message(err.name)
        )
        if message is None:
            raise
        print(f"spd {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left early (`spd inspect STORE | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        return 141  # the shell's code for a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
