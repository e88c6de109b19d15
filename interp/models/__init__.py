"""Model registry. Every model is a TransformerLens `HookedRootModule`.

`build_model(model_cfg)` dispatches on `model_cfg["arch"]`; the other fields
(except `kind`, which says what data the model consumes) are constructor
arguments. The checkpoint stores this dict, so a run rebuilds its model alone.
"""

from collections.abc import Callable, Mapping

from omegaconf import DictConfig, OmegaConf
from transformer_lens import HookedRootModule

from interp.errors import ConfigError
from interp.models.arithmetic_mlp import ArithmeticMLP
from interp.models.gpt2 import load_gpt2
from interp.models.kgram import KGramMLP
from interp.models.lstm import LSTMLM
from interp.models.pretrained import load_pretrained
from interp.models.synthetic import SyntheticActivations
from interp.models.transformer import build_transformer

ARCHITECTURES: dict[str, Callable[..., HookedRootModule]] = {
    "transformer": build_transformer,
    "kgram": KGramMLP,
    "lstm": LSTMLM,
    "arithmetic_mlp": ArithmeticMLP,
    "gpt2": load_gpt2,
    "pretrained": load_pretrained,       # any causal LM TransformerLens loads, by name or from a local folder
    "synthetic": SyntheticActivations,   # SAELens's synthetic benchmark: built from data=synthetic (task=sae only)
}

# Architectures whose weights come from outside (a hub or local files), not from our training.
PRETRAINED = frozenset({"gpt2", "pretrained"})
# Architectures that are no trained model at all: activations generated from a config (data=synthetic).
GENERATED = frozenset({"synthetic"})

# Fields of a model config that describe it rather than parameterise it.
META_FIELDS = ("arch", "kind")


def build_model(model_cfg: Mapping | DictConfig) -> HookedRootModule:
    cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    arch = cfg.get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown model arch {arch!r}; valid: {sorted(ARCHITECTURES)}.")
    kwargs = {k: v for k, v in cfg.items() if k not in META_FIELDS}
    try:
        return ARCHITECTURES[arch](**kwargs)
    except TypeError as e:  # unknown / missing constructor argument
        raise ConfigError(f"model arch={arch}: {e}. Fix the model.* fields in your config.") from e


def context_length(model: HookedRootModule) -> int | None:
    """The longest input a model accepts (transformers' cfg.n_ctx), or None for models that take any
    length (LSTM, k-gram) or fixed rows (arithmetic MLP)."""
    return getattr(getattr(model, "cfg", None), "n_ctx", None)


def is_pretrained(model_cfg: Mapping | DictConfig) -> bool:
    return model_cfg.get("arch") in PRETRAINED
