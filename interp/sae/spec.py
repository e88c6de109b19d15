"""The `sae` config group: our typed settings (SAESpec) and a SAELens training SAE built from the rest.

Every architecture is a SAELens class trained through its own
`training_forward_pass`, so losses, auxiliary terms and decoder-norm handling
are exactly SAELens's; we only map our config names onto its config classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from sae_lens import TrainingSAE

from interp.config_schema import check_sae_k, sae_width
from interp.errors import ConfigError
from interp.sae import fused_standard, fused_topk, sparse_topk, transcoder  # noqa: F401 (fast steps register)
from interp.sae.architectures import FAST_STEPS, training_classes
from interp.sae.normalize import ESTIMATED, KINDS
from interp.sae.sites import Sites


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
    """standard | topk | batchtopk | jumprelu | gated | matryoshka, or any SAELens training architecture (set by sae=<arch>)."""
    hook: Optional[Any] = None
    """The base model's hook point to decompose (`python analyze.py run=<base> hooks` lists them); a list or a
    wildcard (blocks.*.hook_resid_post) trains one dictionary per hook from one pass (interp.sae.dictionaries)."""
    target_hook: Optional[Any] = None
    """What the dictionary reconstructs: null or sae.hook for an SAE; another hook makes it a transcoder
    (sae.hook=blocks.L.ln2.hook_normalized sae.target_hook=blocks.L.hook_mlp_out: the MLP's input and output);
    a list or wildcard pairs with sae.hook's, in the model's order."""
    skip: bool = False
    """Transcoders: add a linear skip path W_skip x (a skip transcoder, Paulo et al. 2025)."""
    layer: Optional[int] = None
    """sae=transcoder: the block whose MLP the transcoder replaces (it sets hook and target_hook)."""
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
    init: str = "saelens"
    """The recipe for the fields below that are left null: `saelens` (SAELens 6's trainer exactly: zero decoder
    bias, decoder rows of norm 0.1, lr 3e-4, dead after 1000 steps) or `interp` (the defaults of topk, batchtopk
    and matryoshka; see INIT_RECIPES and docs/sae_defaults.md for what each choice does and the benchmark)."""
    b_dec_init: Optional[str] = None
    """zeros | mean: the decoder bias starts at the training activations' mean (the target's, for a
    transcoder), so the encoder starts on centred input (Gao et al. 2024; sparsify); estimated over
    norm_estimate_batches batches before the first step."""
    lr_reference_width: Optional[int] = None
    """With optim.lr null: lr = lr_at_reference · sqrt(lr_reference_width / d_sae) per dictionary (Gao et al.
    2024's 1/sqrt(width) rule; sparsify's Adam takes 2e-4 at 16384 for any length); 0 = lr_at_reference at
    any width."""
    lr_at_reference: Optional[float] = None
    """With optim.lr null: the learning rate at lr_reference_width latents (and lr_reference_steps steps)."""
    lr_reference_steps: Optional[int] = None
    """With optim.lr null: lr also scales as sqrt(lr_reference_steps / the run's steps), so a short run takes
    larger steps and a long one smaller (the best linearly decayed rate falls with the horizon; ours fell
    about as 1/sqrt(steps) between 60 and 244 steps, docs/sae_defaults.md); 0 = the same rate at any length."""
    lr_schedule: Optional[str] = None
    """With optim.schedule null: constant, or linear (from the peak down to zero at the last step, as sparsify's
    Adam path)."""
    dead_feature_tokens: Optional[int] = None
    """Tokens (training rows) without firing after which a feature counts as dead and AuxK feeds it
    (sparsify counts in tokens); null: dead_feature_window steps."""
    dead_feature_window: Optional[int] = None
    """Training steps without firing after which a feature counts as dead (SAELens: 1000); overridden by
    dead_feature_tokens."""
    feature_sampling_window: int = 2000
    """Training steps per feature-density window (SAELens's default)."""
    dense_threshold: float = 0.1
    """Density above which a feature counts as dense."""
    eval_batches: int = 8
    """Base-model validation batches per evaluation."""
    norm_estimate_batches: int = 100
    """Training batches over which estimated normalisation statistics and the b_dec mean are computed (one pass)."""
    memory_budget_gb: Optional[float] = None
    """Stop before training when the dictionaries' weights, gradients, Adam state and a batch need more (GiB)."""
    sparse_decode: bool = False
    """topk, batchtopk: decode and encoder backward touch only the selected features (interp.sae.fused_topk);
    same maths, faster."""
    fused: bool = False
    """standard: the step as one autograd function (interp.sae.fused_standard); same maths, faster."""


OWN_FIELDS = frozenset(f.name for f in dataclasses.fields(SAESpec))

# sae.init: the value of each of these fields when it is left null. SAELens-config fields (decoder_init_norm,
# normalize_activations) are passed to SAELens's config class.
INIT_RECIPES = {
    "saelens": {"b_dec_init": "zeros", "lr_at_reference": 3e-4, "lr_reference_width": 0, "lr_reference_steps": 0,
                "lr_schedule": "constant", "dead_feature_window": 1000, "decoder_init_norm": 0.1},
    "interp": {"b_dec_init": "mean", "lr_at_reference": 1.6e-3, "lr_reference_width": 16384,
               "lr_reference_steps": 244, "lr_schedule": "linear", "dead_feature_window": 1000,
               "decoder_init_norm": 1.0,
               "normalize_activations": "expected_average_only_in"},
}
SAE_ONLY = {"normalize_activations"}   # a transcoder reads one hook and writes another: not estimated for one


def _with_recipe(spec: dict) -> dict:
    """`spec` with its sae.init recipe's value for every field left null."""
    recipe = INIT_RECIPES.get(spec.get("init") or "saelens")
    if recipe is None:
        raise ConfigError(f"sae.init={spec.get('init')!r} is not one of {list(INIT_RECIPES)}. Fix: sae.init=interp "
                          "(the recipe of topk/batchtopk) or sae.init=saelens (SAELens's trainer exactly).")
    transcoder = spec.get("layer") is not None or spec.get("target_hook") not in (None, spec.get("hook"))
    return {**spec, **{k: v for k, v in recipe.items()
                       if spec.get(k) is None and not (transcoder and k in SAE_ONLY)}}


def parse_spec(spec: Mapping) -> tuple[SAESpec, dict]:
    """(our settings, the SAELens config kwargs) of an `sae` config; ConfigError on a wrong type."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    spec = OmegaConf.to_container(spec, resolve=True) if not isinstance(spec, dict) else spec
    spec = _with_recipe(spec)
    ours = {k: v for k, v in spec.items() if k in OWN_FIELDS}
    try:
        parsed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SAESpec), ours))
    except OmegaConfBaseException as e:
        raise ConfigError(f"sae: {str(e).splitlines()[0]}. Fix: correct that sae.* override.") from None
    return parsed, {k: v for k, v in spec.items() if k not in OWN_FIELDS and v is not None}


def d_sae_of(spec: SAESpec, d_in: int) -> int:
    return sae_width(spec.d_sae, spec.expansion, d_in)


def learning_rate(spec: SAESpec, d_sae: int, optim_lr: float | None, steps: int) -> float:
    """A dictionary's peak learning rate: optim.lr when set, else its recipe's rule for its width and the run's
    number of steps."""
    if optim_lr is not None:
        return float(optim_lr)
    scale = (spec.lr_reference_width / d_sae) ** 0.5 if spec.lr_reference_width else 1.0
    if spec.lr_reference_steps:
        scale *= (spec.lr_reference_steps / max(1, int(steps))) ** 0.5
    return float(spec.lr_at_reference) * scale


def dead_window_steps(spec: SAESpec) -> int:
    """Steps without firing after which a feature counts as dead."""
    if spec.dead_feature_tokens is not None:
        return max(1, -(-int(spec.dead_feature_tokens) // spec.batch_size))
    return int(spec.dead_feature_window)


def sites(spec: SAESpec) -> Sites:
    return Sites(spec.hook, spec.target_hook or spec.hook)


def check_transcoder(spec: SAESpec, saelens: dict) -> None:
    """A transcoder's settings that SAELens cannot train or save; ConfigError naming the fix."""
    if spec.skip and not sites(spec).transcodes:
        raise ConfigError("sae.skip=true adds a transcoder's skip path, but sae.target_hook is not set (an SAE). "
                          "Fix: set sae.target_hook (e.g. sae=transcoder), or drop sae.skip.")
    if not sites(spec).transcodes:
        return
    if spec.architecture not in transcoder.TRAINABLE:
        raise ConfigError(f"sae.architecture={spec.architecture} cannot be a transcoder here (SAELens has no "
                          f"{spec.architecture} transcoder to load it as). Fix: sae=<one of {', '.join(transcoder.TRAINABLE)}>.")
    if saelens.get("apply_b_dec_to_input"):
        raise ConfigError("sae.apply_b_dec_to_input=true subtracts the decoder bias (the target's) from the input, "
                          "which a transcoder cannot do. Fix: sae.apply_b_dec_to_input=false.")
    if saelens.get("normalize_activations", "none") in ESTIMATED:
        raise ConfigError(f"sae.normalize_activations={saelens['normalize_activations']} is estimated for one hook; "
                          "a transcoder reads one and writes another. Fix: sae.normalize_activations=none.")


def build_training_sae(spec: Mapping | SAESpec, d_in: int, hook: str | None = None,
                       saelens: dict | None = None) -> TrainingSAE:
    """A fresh SAELens training SAE (or transcoder, when spec.target_hook is another hook) for
    activations of width d_in.

    `spec` is an `sae` config (a mapping: parsed here) or an already parsed SAESpec with its
    SAELens kwargs in `saelens`. Every SAELens kwarg must be a field of the architecture's SAELens
    config; a typo is an error, not silently ignored.
    """
    if not isinstance(spec, SAESpec):
        spec, saelens = parse_spec(spec)
    kwargs = dict(saelens or {})
    arch = spec.architecture
    cfg_cls, sae_cls = training_classes(arch)
    valid = {f.name for f in dataclasses.fields(cfg_cls)} - {"d_in", "d_sae", "metadata", "device", "dtype"}
    if unknown := sorted(set(kwargs) - valid):
        raise ConfigError(f"sae.{unknown[0]} is not a setting of the {arch} SAE (SAELens {cfg_cls.__name__}). "
                          f"Valid: {sorted(valid | OWN_FIELDS)}.")
    if (norm := kwargs.get("normalize_activations", "none")) not in KINDS:
        raise ConfigError(f"sae.normalize_activations={norm!r} is not one of {list(KINDS)}.")
    check_transcoder(spec, kwargs)
    # TopK-style k against the width, now that d_in is read from the hook (the config check could not know it)
    check_sae_k(kwargs.get("k"), spec.d_sae, spec.expansion, d_in, hook)
    d_sae = d_sae_of(spec, d_in)
    if "matryoshka_widths" in valid:
        kwargs["matryoshka_widths"] = matryoshka_widths(kwargs.get("matryoshka_widths"), d_sae)
    cfg = cfg_cls(d_in=d_in, d_sae=d_sae, **kwargs)
    cfg.metadata.hook_name = hook
    flags = [flag for flag in ("sparse_decode", "fused") if getattr(spec, flag)]
    fast = next((FAST_STEPS[(arch, f)] for f in flags if (arch, f) in FAST_STEPS), None)
    if sites(spec).transcodes:   # the fast steps encode the input half and measure the error against the target too
        cfg.metadata.hook_name_out = spec.target_hook
        use_fast = fast is not None and not getattr(cfg, "use_sparse_activations", False)
        sae = transcoder.transcoding(fast if use_fast else sae_cls)(cfg)
        sae.init_transcoder(spec.skip)
        return sae
    if fast is not None and not getattr(cfg, "use_sparse_activations", False):
        return fast(cfg)
    return sae_cls(cfg)


def matryoshka_widths(widths: list[int] | None, d_sae: int) -> list[int]:
    """Matryoshka levels: increasing widths ending at d_sae (default: d_sae/16, /8, /4, /2, d_sae)."""
    if widths is None:
        return sorted({max(1, d_sae >> s) for s in (4, 3, 2, 1, 0)})
    widths = [int(w) for w in widths]
    if not widths or widths[-1] != d_sae or any(b <= a for a, b in zip(widths, widths[1:])) or widths[0] < 1:
        raise ConfigError(f"sae.matryoshka_widths={widths} must be increasing widths ending at the SAE's d_sae={d_sae} "
                          f"(each level a prefix of the dictionary). Fix: e.g. sae.matryoshka_widths="
                          f"[{d_sae // 4},{d_sae // 2},{d_sae}], or leave it null for d_sae/16, /8, /4, /2, d_sae.")
    return widths


def inference_sae(sae: TrainingSAE):
    """The SAELens inference SAE that `save_inference_model` + `SAE.load_from_disk` would give,
    built in memory (e.g. BatchTopK becomes JumpReLU with its learned threshold). Evaluating
    this, not the training SAE, makes our metrics the ones users get from the saved files."""
    from sae_lens import SAE

    cfg_dict, state = inference_state(sae)
    cfg = SAE.get_sae_config_class_for_architecture(cfg_dict["architecture"]).from_dict(cfg_dict)
    out = SAE.get_sae_class_for_architecture(cfg.architecture())(cfg)
    out.process_state_dict_for_loading(state)
    out.load_state_dict(state)
    return out.to(sae.W_enc.device).eval()


def inference_state(sae: TrainingSAE) -> tuple[dict, dict]:
    """(config dict, state dict) of the inference SAE SAELens saves `sae` as; a transcoder's as
    SAELens's transcoder of that architecture (interp.sae.transcoder)."""
    from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(state)
    cfg_dict = handle_config_defaulting(sae.cfg.get_inference_sae_cfg_dict())
    if isinstance(sae, transcoder.TranscodingMixin):
        cfg_dict = transcoder.inference_config(cfg_dict, sae.cfg.metadata.hook_name_out, "W_skip" in state)
    return cfg_dict, state
