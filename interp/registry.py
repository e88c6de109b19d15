"""The task registry: `task.name` -> how to build and load that kind of run.

Adding a task is one module (a LightningModule and, if `ModelTaskKind` does not fit, a
TaskKind) plus one line here; see docs/architecture.md.
"""

from __future__ import annotations

from interp.errors import ConfigError
from interp.sae.kind import NAME as SAE
from interp.sae.kind import SAETaskKind
from interp.tasks import LMTask, RegressionTask
from interp.tasks.kind import ModelTaskKind, TaskKind

TASKS: dict[str, TaskKind] = {
    "lm": ModelTaskKind(LMTask),
    "regression": ModelTaskKind(RegressionTask),
    SAE: SAETaskKind(),
}


def task_kind(name: str) -> TaskKind:
    if name not in TASKS:
        raise ConfigError(f"task={name!r} is not a task; valid: {sorted(TASKS)}. Fix: task=<one of them>.")
    return TASKS[name]
