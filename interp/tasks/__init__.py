"""LightningModules, one per training objective, selected by `task.name`."""

from interp.tasks.lm import LMTask
from interp.tasks.regression import RegressionTask

TASKS = {"lm": LMTask, "regression": RegressionTask}

__all__ = ["TASKS", "LMTask", "RegressionTask"]
