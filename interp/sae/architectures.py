"""Which training class an `sae.architecture` name builds: SAELens's registry, plus our faster steps.

Every architecture SAELens trains is registered with its `register_sae_training_class`; ours are
its names (`matryoshka` is `matryoshka_batchtopk`). A module with a faster step of the same maths
registers it for (architecture, the SAESpec flag that turns it on) with `@fast_step`.
"""

from __future__ import annotations

from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY

from interp.errors import ConfigError

RENAMED = {"matryoshka": "matryoshka_batchtopk"}
FAST_STEPS: dict[tuple[str, str], type] = {}


def fast_step(architecture: str, flag: str):
    """Class decorator: the class trains `architecture` faster, where SAESpec.<flag> is true."""
    def register(cls: type) -> type:
        FAST_STEPS[(architecture, flag)] = cls
        return cls
    return register


def training_classes(architecture: str) -> tuple[type, type]:
    """(SAELens training config class, training SAE class) of one of our architecture names."""
    name = RENAMED.get(architecture, architecture)
    if name not in SAE_TRAINING_CLASS_REGISTRY:
        valid = sorted({*SAE_TRAINING_CLASS_REGISTRY, *RENAMED} - set(RENAMED.values()))
        raise ConfigError(f"sae.architecture={architecture!r} is not one of {valid}. Fix: sae=<one of them>.")
    sae_cls, cfg_cls = SAE_TRAINING_CLASS_REGISTRY[name]
    return cfg_cls, sae_cls
