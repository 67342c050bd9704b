"""What a decomposition runs on (`DecompositionTask`) and how a config's target becomes one."""

from spd_core.task.definition import BatchFn, DecompositionTask
from spd_core.task.make import make_task

__all__ = ["BatchFn", "DecompositionTask", "make_task"]
