"""Edited models: a target with chosen components subtracted from its weights, written as a
folder that loads without spd (`spd export`)."""

from spd_core.edit.export import ExportResult, export_edited
from spd_core.edit.note import NOTE_JSON, NOTE_TEXT, EditNote
from spd_core.edit.selection import EditError, check_selection
from spd_core.edit.toy_target import load_edited_toy_target
from spd_core.edit.weights import RemovedComponents, removed_weight, subtract_components

__all__ = [
    "NOTE_JSON",
    "NOTE_TEXT",
    "EditError",
    "EditNote",
    "ExportResult",
    "RemovedComponents",
    "check_selection",
    "export_edited",
    "load_edited_toy_target",
    "removed_weight",
    "subtract_components",
]
