"""`export_edited`: a store's target with chosen components removed, written as a folder that
loads without spd (a Hugging Face folder, or a toy target's weights) with a note of the edit."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spd_core.edit.note import NOTE_JSON, EditNote
from spd_core.edit.selection import EditError, check_selection
from spd_core.edit.toy_target import write_toy_target
from spd_core.edit.weights import subtract_components
from spd_core.store import FactorStore
from spd_core.store.location import Location


@dataclass(frozen=True)
class ExportResult:
    """Where the edited model was written, and the note written with it."""

    folder: Path
    note: EditNote


def check_out_dir(out: Path, overwrite: bool, store: FactorStore) -> None:
    """EditError unless `out` can be written: absent or empty, or, with `overwrite`, a folder an
    earlier export wrote (a folder of anything else is never deleted); never the store."""
    if "://" not in str(store.path):  # a local store
        store_dir = Path(store.path).resolve()
        if out.resolve() == store_dir or store_dir in out.resolve().parents:
            raise EditError(f"--out {out} lies in the store {store.path}; choose another folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise EditError(f"--out {out} exists and is not a folder; choose another path")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise EditError(
            f"--out {out} exists and is not empty; choose another folder, or pass --overwrite "
            "to replace an earlier export there"
        )
    if not (out / NOTE_JSON).is_file():
        raise EditError(
            f"--out {out} is not empty and is not a folder `spd export` wrote (it has no "
            f"{NOTE_JSON}); --overwrite replaces only earlier exports: choose another folder"
        )


def export_edited(
    store: FactorStore | str | Path | Location,
    selection: Mapping[str, Sequence[int]],
    out: str | Path,
    overwrite: bool = False,
) -> ExportResult:
    """Write the store's target with `selection`'s components subtracted from its weights into
    `out`. A Hugging Face target becomes a Hugging Face folder (model and tokenizer, fp32
    safetensors) that `from_pretrained` loads; a toy target becomes a Zarr group like a store's
    `target/` (`load_edited_toy_target`). The selection, the store and `out` are checked before
    the target is loaded; the folder is written beside `out` and moved into place when done."""
    if not isinstance(store, FactorStore):
        store = FactorStore.open(store)
    chosen = check_selection(store, selection)
    out = Path(out).expanduser()
    check_out_dir(out, overwrite, store)
    spec = store.target_spec
    if spec.get("kind") not in ("hf", "toy"):
        raise EditError(
            f"{store.path}: its target (kind {spec.get('kind')!r}) is not one spd can rebuild; "
            "only Hugging Face and toy targets are exported"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        note = _write(store, chosen, tmp)
        if out.exists():
            shutil.rmtree(out)  # empty, or an earlier export (check_out_dir)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(out, note)


def _write(store: FactorStore, chosen: dict[str, list[int]], folder: Path) -> EditNote:
    from spd_core.loading import hf_target_of, target_from_store

    spec = store.target_spec
    common = {"store": str(store.path), "store_code_version": store.code_version}
    if spec["kind"] == "hf":
        from spd_core.targets.tiny_llama.export import save_hf_folder

        hf = hf_target_of(store)
        removed = subtract_components(hf.model, store, chosen)
        if any(r.untied for r in removed):
            for config in (hf.model.config, hf.model.config.get_text_config()):
                config.tie_word_embeddings = False  # else loading would tie them again
        hf.model.config.use_cache = True  # spd turns it off for its masked forwards
        save_hf_folder(hf.model, hf.tokenizer, folder, hf.tokenizer.model_max_length)
        note = EditNote(
            target=spec["model"], target_format="huggingface", removed=removed, **common
        )
    else:
        target = target_from_store(store)
        removed = subtract_components(target, store, chosen)
        note = EditNote(
            target=str(spec.get("name") or spec["spec"]["kind"]),
            target_format="toy",
            removed=removed,
            **common,
        )
        write_toy_target(folder, spec, target.state_dict(), note.to_json())
    note.write(folder)
    return note
