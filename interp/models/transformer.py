"""Transformers (0/1/2-layer attention-only and full) as TransformerLens models.

Every field of the model config except `arch` and `kind` is passed straight to
`HookedTransformerConfig`, so anything TransformerLens supports is one override
away (e.g. `model.normalization_type=LNPre`).
"""

import dataclasses
import warnings

from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.errors import ConfigError

_TL_FIELDS = {f.name for f in dataclasses.fields(HookedTransformerConfig)}


def build_transformer(**fields) -> HookedTransformer:
    unknown = sorted(set(fields) - _TL_FIELDS)
    if unknown:
        raise ConfigError(
            f"model config has fields HookedTransformerConfig does not know: {unknown}. "
            "Fix: remove them or use a HookedTransformerConfig field name "
            "(see transformer_lens.HookedTransformerConfig)."
        )
    if not fields.get("attn_only") and fields.get("n_layers", 0) > 0 and not fields.get("d_mlp"):
        raise ConfigError("model.d_mlp must be set for a transformer with MLPs (or set model.attn_only=true).")
    # Lightning moves the module; building on CPU keeps construction device-independent.
    fields.setdefault("device", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(HookedTransformerConfig(**fields))
