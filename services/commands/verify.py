"""`spd verify STORE [--json]`: check every file of a factor store against its manifest."""

from __future__ import annotations

import argparse
import json
import sys

from services.commands.store_location import add_storage_options, store_location
from spd_core.store import StoreError, VerifyReport, verify_store

NOT_VERIFIABLE = 3

DESCRIPTION = """\
Check a factor store fully: every file recorded in its integrity manifest (written when the run
marked the store complete) is present, of its recorded size and SHA-256; every metadata document
is readable; every module's factors U (C, d_out) and V (C, d_in) have the shapes its attributes
say; no chunk was added after completion. A complete harvest (`spd harvest`, under harvest/) and
complete labels (`spd autointerp`, under interp/) are checked the same way against their own
manifests. Every problem is named: the array or group, the file
(chunk key such as c/0/0, or zarr.json), what was expected and what was found.

Readers (`spd serve`, `spd inspect`, load_decomposition) make the cheap half of this check on
every open (one listing: a missing or truncated file); this command reads every byte.

--json prints one JSON object with the keys
  path, ok, verified, schema, complete, note, files_checked, bytes_checked, seconds,
  harvest    "complete", "incomplete" or null (no harvest/ group; schema 3),
  interp     the same for the labels' interp/ group (schema 4),
  problems   [{kind, what, node, key, expected, found}]; kind is one of missing, size,
             checksum, unexpected, metadata, manifest, incomplete, schema; what is chunk,
             metadata or store

Exit status: 0 verified, no problem; 1 problems found (an incomplete store is one); 2 not a
factor store (or of a newer schema); 3 no problem found, but the store predates integrity
manifests (schema 1), so its chunks could not be verified.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check every file of a factor store against its integrity manifest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", help="path or URL of a .zarr factor store")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_storage_options(p)


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_report(report: VerifyReport) -> str:
    """The human-readable report."""
    state = "complete" if report.complete else "incomplete"
    lines = [
        f"factor store  {report.path}",
        f"  schema {report.schema}, {state}; {report.files_checked} files "
        f"({_size(report.bytes_checked)}) checked in {report.seconds:.2f} s",
    ]
    if report.note:
        lines.append(f"  note: {report.note}")
    if report.harvest == "complete":
        lines.append("  harvest: complete, its files checked against its own manifest")
    elif report.harvest == "incomplete":
        lines.append(
            "  harvest: incomplete (still running, or stopped; not served): finish it with "
            f"`spd harvest {report.path} --resume`"
        )
    if report.interp == "complete":
        lines.append("  labels: complete, their files checked against their own manifest")
    elif report.interp == "incomplete":
        lines.append(
            "  labels: incomplete (still running, or stopped; not served): finish them with "
            f"`spd autointerp {report.path} --resume` and the same options"
        )
    if report.ok:
        lines.append(
            "  OK: every file matches the manifest; metadata readable; shapes as the schema says"
            if report.verified
            else "  no problem found in metadata and shapes; chunks not verified (see note)"
        )
        return "\n".join(lines)
    lines.append(f"  {len(report.problems)} problem(s):")
    lines.extend(f"  - {p.describe(report.path)}" for p in report.problems)
    return "\n".join(lines)


def exit_status(report: VerifyReport) -> int:
    """0 verified, 1 problems, 3 nothing wrong found but not verifiable."""
    if not report.ok:
        return 1
    return 0 if report.verified else NOT_VERIFIABLE


def run(args: argparse.Namespace) -> int:
    try:
        report = verify_store(store_location(args.store, args))
    except StoreError as err:
        print(f"spd verify: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else format_report(report))
    return exit_status(report)
