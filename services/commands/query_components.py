"""`spd query list-components` and `spd query summary`: a served decomposition's harvested
component statistics (ListComponents, GetComponentSummary)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from services.commands.component_contexts import parse_component
from services.commands.component_summary import format_components, format_summary, jsonable

if TYPE_CHECKING:
    from spd_client import Client


def add_component_parsers(q: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    lst = q.add_parser(
        "list-components",
        help="components with their harvested firing statistics, sorted",
        parents=[common],
    )
    lst.add_argument("name")
    lst.add_argument("--module", help="only this module's components (default all)")
    lst.add_argument(
        "--order",
        choices=["frequency", "mean_ci"],
        default="frequency",
        help="sort by firing frequency or mean CI when firing, highest first (default frequency)",
    )
    lst.add_argument(
        "--label-contains",
        metavar="TEXT",
        help="only components whose label (or token summary, unlabelled) contains TEXT, any case",
    )
    lst.add_argument("--page-size", type=int, default=0, help="components per page (default 100)")
    lst.add_argument("--page-token", default="", help="next_page_token of the previous page")
    lst.add_argument("--all", action="store_true", help="fetch every page")
    summ = q.add_parser(
        "summary",
        help="one component's label and scores, token summary, harvested statistics, examples",
        parents=[common],
    )
    summ.add_argument("name")
    summ.add_argument("component", metavar="MODULE:INDEX", help="e.g. linear1:3")


def run_component_query(client: Client, args: argparse.Namespace) -> tuple[Any, list[str]]:
    """(JSON-able result, table lines)."""
    if args.query == "summary":
        module, index = parse_component(args.component)
        found = jsonable(client.get_component_summary(args.name, module, index))
        return found, format_summary(found)
    rows: list[dict[str, Any]] = []
    token = args.page_token
    while True:
        page = client.list_components(
            args.name, args.module, args.order, args.page_size, token, args.label_contains
        )
        rows += jsonable(page.components)
        token = page.next_page_token
        if not (args.all and token):
            break
    result = {"components": rows, "next_page_token": token, "total_size": page.total_size}
    lines = format_components(rows)
    if token:
        lines.append(f"({len(rows)} of {page.total_size}; next page: --page-token {token})")
    return result, lines
