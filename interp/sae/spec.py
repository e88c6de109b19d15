"""The `sae` config group -> a SAELens training SAE.

Every architecture is a SAELens class trained through its own
`training_forward_pass`, so losses, auxiliary terms and decoder-norm handling
are exactly SAELens's; we only map our config names onto its config classes.
"""

from __future__ import annotations

import dataclasses

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

from interp.errors import ConfigError
from interp.sae.normalize import KINDS

ARCHITECTURES = {
    "standard": (StandardTrainingSAEConfig, StandardTrainingSAE),
    "topk": (TopKTrainingSAEConfig, TopKTrainingSAE),
    "batchtopk": (BatchTopKTrainingSAEConfig, BatchTopKTrainingSAE),
    "jumprelu": (JumpReLUTrainingSAEConfig, JumpReLUTrainingSAE),
    "gated": (GatedTrainingSAEConfig, GatedTrainingSAE),
}

# Fields of conf/sae/*.yaml that are ours (data, cache, metrics), not SAELens config fields.
OWN_FIELDS = {
    "architecture", "hook", "expansion", "d_sae", "batch_size", "source", "harvest_tokens", "buffer_tokens",
    "d_in", "cache", "dead_feature_window", "feature_sampling_window", "dense_threshold", "eval_batches",
    "sparse_decode", "fused", "norm_estimate_batches",
}


def d_sae_of(spec: dict, d_in: int) -> int:
    return int(spec.get("d_sae") or spec["expansion"] * d_in)


def build_training_sae(spec: dict, d_in: int, hook: str | None = None) -> TrainingSAE:
    """A fresh SAELens training SAE for activations of width d_in.

    Every key of `spec` that is not one of ours must be a field of the
    architecture's SAELens config; a typo is an error, not silently ignored.
    """
    arch = spec.get("architecture")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"sae.architecture={arch!r} is not one of {sorted(ARCHITECTURES)}. Fix: sae=<one of them>.")
    cfg_cls, sae_cls = ARCHITECTURES[arch]
    valid = {f.name for f in dataclasses.fields(cfg_cls)} - {"d_in", "d_sae", "metadata", "device", "dtype"}
    kwargs = {k: v for k, v in spec.items() if k not in OWN_FIELDS and v is not None}
    if unknown := sorted(set(kwargs) - valid):
        raise ConfigError(f"sae.{unknown[0]} is not a setting of the {arch} SAE (SAELens {cfg_cls.__name__}). "
                          f"Valid: {sorted(valid | OWN_FIELDS)}.")
    if (norm := kwargs.get("normalize_activations", "none")) not in KINDS:
        raise ConfigError(f"sae.normalize_activations={norm!r} is not one of {list(KINDS)}.")
    cfg = cfg_cls(d_in=d_in, d_sae=d_sae_of(spec, d_in), **kwargs)
    cfg.metadata.hook_name = hook
    if arch == "topk" and spec.get("sparse_decode", False) and not cfg.use_sparse_activations:
        from interp.sae.sparse_topk import SparseDecodeTopKTrainingSAE

        return SparseDecodeTopKTrainingSAE(cfg)
    if arch == "batchtopk" and spec.get("sparse_decode", False) and not cfg.use_sparse_activations:
        from interp.sae.fused_topk import SparseBatchTopKTrainingSAE

        return SparseBatchTopKTrainingSAE(cfg)
    if arch == "standard" and spec.get("fused", False):
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
