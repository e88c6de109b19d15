"""Every hook point of a model with the activation shape it produces."""

import torch


def example_input(model, config: dict, length: int = 8) -> torch.Tensor:
    """A small valid input: `length` tokens for a language model, one zero row otherwise."""
    if config["model"]["kind"] == "regression":
        return torch.zeros(1, model.n_inputs, dtype=torch.long)
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None) or length
    return torch.zeros(1, min(length, n_ctx), dtype=torch.long)


@torch.no_grad()
def hook_shapes(model, inputs: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Hook name -> activation shape on `inputs`, in the model's forward order."""
    _, cache = model.run_with_cache(inputs)
    return {name: tuple(cache[name].shape) for name in cache.keys()}
