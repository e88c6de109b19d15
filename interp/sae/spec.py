"""The `sae` config group: our typed settings (SAESpec) and a SAELens training SAE built from the rest.

Every architecture is a SAELens class trained through its own
`training_forward_pass`, so losses, auxiliary terms and decoder-norm handling
are exactly SAELens's; we only map our config names onto its config classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from sae_lens import (
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedTrainingSAE,
    GatedTrainingSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
    TrainingSAE,
)

from interp.config_schema import check_sae_k, sae_width
from interp.errors import ConfigError
from interp.sae.normalize import KINDS

ARCHITECTURES = {
    "standard": (StandardTrainingSAEConfig, StandardTrainingSAE),
    "topk": (TopKTrainingSAEConfig, TopKTrainingSAE),
    "batchtopk": (BatchTopKTrainingSAEConfig, BatchTopKTrainingSAE),
    "jumprelu": (JumpReLUTrainingSAEConfig, JumpReLUTrainingSAE),
    "gated": (GatedTrainingSAEConfig, GatedTrainingSAE),
}

@dataclass
class CacheSpec:
    """Where harvested activations are kept (`sae.cache.*`)."""

    root: str = ".cache/activations"
    """Folder of the shared activation caches, one sub-folder per content key (the config group
    sets ${paths.cache_dir}/activations)."""
    dtype: str = "float32"
    """float32 | float16 (half the disk)."""
    verify: bool = True
    """Check the cache's sha256 before using it."""
    path: Optional[str] = None
    """A specific cache dir; a mismatch there is refused, never rebuilt."""


@dataclass
class SAESpec:
    """Our fields of the `sae` config group (conf/sae/common.yaml holds their defaults). Every other
    field of conf/sae/<arch>.yaml is a field of the architecture's SAELens training-SAE config."""

    architecture: str = "standard"
    """standard | topk | batchtopk | jumprelu | gated (set by sae=<arch>)."""
    hook: Optional[str] = None
    """The base model's hook point to decompose (`python analyze.py run=<base> hooks` lists them)."""
    d_in: Optional[int] = None
    """Read from the hook; set it only to assert the width."""
    expansion: int = 8
    """d_sae = expansion * d_in, unless d_sae is given."""
    d_sae: Optional[int] = None
    """Dictionary size; overrides expansion."""
    batch_size: int = 4096
    """Activation rows per training step."""
    source: str = "cache"
    """cache (harvest once, shared by a sweep) | stream (harvest while training)."""
    harvest_tokens: int = 500_000
    """Rows in the cache; training cycles through them."""
    buffer_tokens: int = 65536
    """Rows in memory: the cache's read block, or the stream's shuffle buffer."""
    cache: CacheSpec = field(default_factory=CacheSpec)
    """The activation cache."""
    dead_feature_window: int = 1000
    """Training steps without firing after which a feature counts as dead (SAELens's default)."""
    feature_sampling_window: int = 2000
    """Training steps per feature-density window (SAELens's default)."""
    dense_threshold: float = 0.1
    """Density above which a feature counts as dense."""
    eval_batches: int = 8
    """Base-model validation batches per evaluation."""
    norm_estimate_batches: int = 100
    """Training batches over which estimated normalisation statistics are computed."""
    sparse_decode: bool = False
    """topk, batchtopk: decode and encoder backward touch only the selected features (interp.sae.fused_topk);
    same maths, faster."""
    fused: bool = False
    """standard: the step as one autograd function (interp.sae.fused_standard); same maths, faster."""


OWN_FIELDS = frozenset(f.name for f in dataclasses.fields(SAESpec))


def parse_spec(spec: Mapping) -> tuple[SAESpec, dict]:
    """(our settings, the SAELens config kwargs) of an `sae` config; ConfigError on a wrong type."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    spec = OmegaConf.to_container(spec, resolve=True) if not isinstance(spec, dict) else spec
    ours = {k: v for k, v in spec.items() if k in OWN_FIELDS}
    try:
        parsed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SAESpec), ours))
    except OmegaConfBaseException as e:
        raise ConfigError(f"sae: {str(e).splitlines()[0]}. Fix: correct that sae.* override.") from None
    return parsed, {k: v for k, v in spec.items() if k not in OWN_FIELDS and v is not None}


def d_sae_of(spec: SAESpec, d_in: int) -> int:
    return sae_width(spec.d_sae, spec.expansion, d_in)


def build_training_sae(spec: Mapping | SAESpec, d_in: int, hook: str | None = None,
                       saelens: dict | None = None) -> TrainingSAE:
    """A fresh SAELens training SAE for activations of width d_in.

    `spec` is an `sae` config (a mapping: parsed here) or an already parsed SAESpec with its
    SAELens kwargs in `saelens`. Every SAELens kwarg must be a field of the architecture's SAELens
    config; a typo is an error, not silently ignored.
    """
    if not isinstance(spec, SAESpec):
        spec, saelens = parse_spec(spec)
    kwargs = dict(saelens or {})
    arch = spec.architecture
    if arch not in ARCHITECTURES:
        raise ConfigError(f"sae.architecture={arch!r} is not one of {sorted(ARCHITECTURES)}. Fix: sae=<one of them>.")
    cfg_cls, sae_cls = ARCHITECTURES[arch]
    valid = {f.name for f in dataclasses.fields(cfg_cls)} - {"d_in", "d_sae", "metadata", "device", "dtype"}
    if unknown := sorted(set(kwargs) - valid):
        raise ConfigError(f"sae.{unknown[0]} is not a setting of the {arch} SAE (SAELens {cfg_cls.__name__}). "
                          f"Valid: {sorted(valid | OWN_FIELDS)}.")
    if (norm := kwargs.get("normalize_activations", "none")) not in KINDS:
        raise ConfigError(f"sae.normalize_activations={norm!r} is not one of {list(KINDS)}.")
    # TopK-style k against the width, now that d_in is read from the hook (the config check could not know it)
    check_sae_k(kwargs.get("k"), spec.d_sae, spec.expansion, d_in, hook)
    cfg = cfg_cls(d_in=d_in, d_sae=d_sae_of(spec, d_in), **kwargs)
    cfg.metadata.hook_name = hook
    if arch == "topk" and spec.sparse_decode and not cfg.use_sparse_activations:
        from interp.sae.sparse_topk import SparseDecodeTopKTrainingSAE

        return SparseDecodeTopKTrainingSAE(cfg)
    if arch == "batchtopk" and spec.sparse_decode and not cfg.use_sparse_activations:
        from interp.sae.fused_topk import SparseBatchTopKTrainingSAE

        return SparseBatchTopKTrainingSAE(cfg)
    if arch == "standard" and spec.fused:
        from interp.sae.fused_standard import FusedStandardTrainingSAE

        return FusedStandardTrainingSAE(cfg)
    return sae_cls(cfg)


def inference_sae(sae: TrainingSAE):
    """The SAELens inference SAE that `save_inference_model` + `SAE.load_from_disk` would give,
    built in memory (e.g. BatchTopK becomes JumpReLU with its learned threshold). Evaluating
    this, not the training SAE, makes our metrics the ones users get from the saved files."""
    from sae_lens import SAE
    from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(state)
    cfg_dict = handle_config_defaulting(sae.cfg.get_inference_sae_cfg_dict())
    cfg = SAE.get_sae_config_class_for_architecture(cfg_dict["architecture"]).from_dict(cfg_dict)
    out = SAE.get_sae_class_for_architecture(cfg.architecture())(cfg)
    out.process_state_dict_for_loading(state)
    out.load_state_dict(state)
    return out.to(sae.W_enc.device).eval()
