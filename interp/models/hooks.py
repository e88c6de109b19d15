"""Hook points of any model: checking a name, listing shapes, placing a model on a device."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from interp.errors import ConfigError
from interp.models import context_length


def check_hook(model, hook: str | None, setting: str = "hook", model_name: str = "the model") -> str:
    """`hook` if the model has a hook point of that name, else a ConfigError listing the valid names.

    `setting` is the override the user typed it in (`hook` for analyses, `sae.hook` for SAE runs).
    """
    if hook not in model.hook_dict:
        raise ConfigError(f"{setting}={hook!r} is not a hook of {model_name}. Valid hooks: "
                          f"{', '.join(sorted(model.hook_dict))}. Fix: {setting}=<one of the valid hooks> "
                          "(`python analyze.py run=<run> hooks` shows their shapes).")
    return hook


def example_input(model, length: int = 8) -> torch.Tensor:
    """A small valid input: one zero row for row models (`n_inputs`), else `length` tokens."""
    if hasattr(model, "n_inputs"):
        return torch.zeros(1, model.n_inputs, dtype=torch.long)
    return torch.zeros(1, min(length, context_length(model) or length), dtype=torch.long)


@torch.no_grad()
def hook_shapes(model, inputs: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Hook name -> activation shape on `inputs`, in the model's forward order."""
    _, cache = model.run_with_cache(inputs.to(next(model.parameters()).device))
    return {name: tuple(cache[name].shape) for name in cache.keys()}


def to_device(model, device):
    """Move a model to `device`; TransformerLens models also keep cfg.device in sync. Returns it."""
    if isinstance(model, HookedTransformer):
        model.to(device, print_details=False)
    else:
        model.to(device)
    return model
