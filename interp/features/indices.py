"""Feature indices typed by users, checked against the SAE's width (the one check, for every analysis)."""

from __future__ import annotations

from interp.errors import ConfigError


def check_feature_index(sae, index) -> int:
    """`index` (an int, or digits from the command line) as an int in 0..d_sae-1, or a ConfigError
    naming the SAE's width."""
    width = int(sae.cfg.d_sae)
    fix = f"Fix: feature=<an integer in 0..{width - 1}>."
    if isinstance(index, bool) or not isinstance(index, int) and not (isinstance(index, str) and index.isdigit()):
        raise ConfigError(f"feature {index!r} is not a feature index: this SAE has {width} features "
                          f"(0..{width - 1}). {fix}")
    if not 0 <= int(index) < width:
        raise ConfigError(f"feature {index} is out of range: this SAE has {width} features (0..{width - 1}). {fix}")
    return int(index)
