"""The one check that a feature index exists in an SAE's dictionary."""

from __future__ import annotations

from interp.errors import ConfigError


def check_feature_index(sae, index) -> int:
    """`index` as an int in [0, d_sae), or a ConfigError naming the SAE's width."""
    d_sae = sae.cfg.d_sae
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < d_sae:
        raise ConfigError(f"feature {index!r} is not a feature of this SAE: it has d_sae={d_sae} features, "
                          f"numbered 0..{d_sae - 1}. Fix: pass an integer index below {d_sae}.")
    return index
