"""`spd export STORE --ablate MODULE:I,J [--ablate ...] --out DIR`: the target with chosen
components subtracted from its weights, as a folder that loads without spd."""

from __future__ import annotations

import argparse
import sys

from services.commands.store_location import add_storage_options, store_location
from spd_core.edit import NOTE_JSON, NOTE_TEXT, EditError, export_edited
from spd_core.store import FactorStore, StoreError

DESCRIPTION = f"""\
Write the decomposed target with the chosen components removed from its weights: for each
--ablate MODULE:I,J the module's weight W becomes W - sum of u_c v_c^T over the components c
listed (rows c of the store's U and V), all other weights unchanged. The edited model's outputs
equal spd's Ablate in MASK_MODE_ABLATE with use_delta on the same components (the delta
component keeps whatever the components do not explain), to float tolerance.

What DIR holds:
  Hugging Face targets  a Hugging Face folder (config.json, model.safetensors in float32, the
                        tokenizer) that plain transformers loads without spd:
                        AutoModelForCausalLM.from_pretrained(DIR) (AutoModel for other models).
                        A weight tied to another module's (an LM head and its embedding) is
                        untied: only the module named loses the components.
  toy targets           a Zarr group laid out as a store's target/ group (one array per
                        state-dict entry) with the target's spec in its attributes; load it with
                        spd_core.edit.load_edited_toy_target(DIR), or read the arrays with zarr.
  both                  {NOTE_JSON} (machine-readable) and {NOTE_TEXT}: the store, the modules
                        and components removed, the norms of each u_c v_c^T, of W and of what was
                        removed, and the spd version.

Everything is checked before the target is loaded: a malformed --ablate, a module the store did
not decompose (the error lists those it did), an index outside 0..C-1, an incomplete store, and
DIR: it must be absent or empty, or, with --overwrite, an earlier export (a folder with
{NOTE_JSON}); any other folder is never deleted. DIR is written beside itself and moved into
place when complete.

Example:
  spd export tiny-llama-2l.zarr --ablate model.layers.0.mlp.up_proj:1,2 --out edited/
"""


def parse_ablation(value: str) -> tuple[str, list[int]]:
    """'model.layers.0.mlp.up_proj:1,2' -> (module, [1, 2]); argparse's type for --ablate."""
    module, sep, indices = value.rpartition(":")
    parts = indices.split(",")
    if not sep or not module or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"{value!r}: write MODULE:I,J (component indices, comma-separated), e.g. "
            "model.layers.0.mlp.up_proj:1,2"
        )
    return module, [int(p) for p in parts]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the target with chosen components removed, as a model that loads without spd",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", help="path or URL of a complete .zarr factor store")
    p.add_argument(
        "--ablate",
        type=parse_ablation,
        action="append",
        required=True,
        metavar="MODULE:I,J",
        help="remove components I, J, ... of MODULE (repeat for more modules)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in DIR")
    add_storage_options(p)


def run(args: argparse.Namespace) -> int:
    selection: dict[str, list[int]] = {}
    for module, indices in args.ablate:
        selection.setdefault(module, []).extend(indices)
    try:
        store = FactorStore.open(store_location(args.store, args))
        result = export_edited(store, selection, args.out, overwrite=args.overwrite)
    except (StoreError, EditError) as err:
        print(f"spd export: error: {err}", file=sys.stderr)
        return 2
    note = result.note
    what = "a Hugging Face folder" if note.target_format == "huggingface" else "a toy target"
    print(f"wrote {result.folder}: {what}, {note.target} edited")
    for r in note.removed:
        share = r.removed_norm / r.weight_norm if r.weight_norm else float("nan")
        print(
            f"  {r.module}: removed {len(r.components)} of {r.C} components "
            f"({', '.join(map(str, r.components))}); |removed| / |W| = {share:.3g}"
        )
    if note.target_format == "huggingface":
        auto = "AutoModelForCausalLM" if store.target_spec.get("causal_lm") else "AutoModel"
        print(
            f"load it: from transformers import {auto}; "
            f"{auto}.from_pretrained({str(result.folder)!r})"
        )
    else:
        print(f"load it: spd_core.edit.load_edited_toy_target({str(result.folder)!r})")
    return 0
