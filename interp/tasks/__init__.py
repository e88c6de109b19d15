"""LightningModules of the model tasks (the SAE task is in interp.sae); registry in interp.registry."""

from interp.tasks.lm import LMTask
from interp.tasks.regression import RegressionTask

__all__ = ["LMTask", "RegressionTask"]
