"""Any causal language model TransformerLens converts, as a `HookedTransformer`: by name from the hub, or
offline from a local Hugging Face folder.

- Hub (`local_dir=None`): `HookedTransformer.from_pretrained(name)` for any name or alias TransformerLens
  knows (Pythia, Gemma 2 and 3, Llama 3, Qwen 2.5 and 3, OLMo, GPT-2, ...); files land in, or come from,
  the Hugging Face cache, so a model loaded once online loads offline afterwards.
- Local folder (`local_dir=/path`: config.json, weights, and usually the tokenizer, as `save_pretrained`
  writes them). TransformerLens's `from_pretrained` takes only hub names, so the config is built from the
  folder's config.json by TransformerLens's own conversion (`convert_hf_model_config`) where it converts
  that architecture from a config; the Gemma families, which it configures by name only, get the config
  of their reference model resized from config.json (`NAME_CONFIGURED`). The weights then go through
  TransformerLens's own conversion (`get_pretrained_state_dict` with the Hugging Face model) and weight
  processing, as `from_pretrained` does: one path for every family.

Weight processing (fold_ln, center_writing_weights, center_unembed, fold_value_biases) is
`from_pretrained`'s, with its exceptions (no centred unembedding with logit soft-capping, no folding for
post-norm models). None of it changes log-probs. What was loaded, from where, its weight files' sha256 and
the processing are in `model.provenance`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp import hub
from interp.errors import ConfigError, DataError
from interp.files import file_sha256
from interp.models.fused_ops import fuse

# Checked in this order; a *.index.json lists shards that are hashed too.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")
PROCESSING_DEFAULTS = {"fold_ln": True, "center_writing_weights": True, "center_unembed": True,
                       "fold_value_biases": True}
# Families loaded from local folders in the tests (tiny random models, log-probs equal to Hugging Face's)
TESTED = ("GPT2LMHeadModel", "GPTNeoXForCausalLM", "LlamaForCausalLM", "Gemma2ForCausalLM", "Qwen2ForCausalLM")
# Architectures TransformerLens configures from config.json (convert_hf_model_config) and converts
CONFIGURED = ("GPT2LMHeadModel", "GPTNeoForCausalLM", "GPTNeoXForCausalLM", "GPTJForCausalLM", "OPTForCausalLM",
              "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "BloomForCausalLM",
              "Qwen2ForCausalLM", "Qwen3ForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM", "Olmo3ForCausalLM",
              "OlmoeForCausalLM")
# Architectures TransformerLens configures by name only: the reference model whose config is resized
NAME_CONFIGURED = {"GemmaForCausalLM": "google/gemma-2b", "Gemma2ForCausalLM": "google/gemma-2-2b"}
SUPPORTED = CONFIGURED + tuple(NAME_CONFIGURED)
_FIX = ("Fix: load it by name online (network access to the Hugging Face hub; it is then cached for offline "
        "use), or save it with save_pretrained (config.json, weights, tokenizer) into a folder and set "
        "model.local_dir=/path/to/folder.")


def load_pretrained(name: str, local_dir: str | None = None, revision: str | None = None, *,
                    fold_ln: bool = True, center_writing_weights: bool = True, center_unembed: bool = True,
                    fold_value_biases: bool = True, n_ctx: int | None = None, d_vocab: int | None = None,
                    device: str = "cpu", dtype: str = "float32") -> HookedTransformer:
    """A pretrained causal LM in eval mode, with `model.provenance`.

    name: a TransformerLens name or alias (with local_dir: only a label). n_ctx: None = the model's
    context; smaller crops it. d_vocab: None, or asserted equal to the model's vocabulary.
    dtype: float32 | bfloat16 | float16.
    """
    if dtype not in ("float32", "float64", "bfloat16", "float16"):
        raise ConfigError(f"model.dtype={dtype!r} is not one of float32, bfloat16, float16 (float64 for tests). "
                          "Fix: model.dtype=float32.")
    processing = {"fold_ln": fold_ln, "center_writing_weights": center_writing_weights,
                  "center_unembed": center_unembed, "fold_value_biases": fold_value_biases}
    if local_dir is not None:
        folder = Path(local_dir).expanduser().resolve()
        config = read_config(folder)
        model = _load_local(folder, name, config, processing, n_ctx, device, dtype)
    else:
        repo = official_name(name)
        model = load_hub(repo, revision, processing, n_ctx, device, dtype)
    if d_vocab is not None and d_vocab != model.cfg.d_vocab:
        raise ConfigError(f"model.d_vocab={d_vocab} but {name} has a vocabulary of {model.cfg.d_vocab}. "
                          f"Fix: model.d_vocab={model.cfg.d_vocab} (or null).")
    fuse(model).eval()
    model.provenance = provenance(name, local_dir, revision, **processing)
    return model


def official_name(name: str) -> str:
    """TransformerLens's official name for a name or alias; ConfigError listing the closest it knows."""
    from transformer_lens.loading_from_pretrained import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    aliases = {a.lower(): official for official, names in MODEL_ALIASES.items() for a in names}
    officials = {n.lower(): n for n in OFFICIAL_MODEL_NAMES}
    found = officials.get(name.lower()) or aliases.get(name.lower())
    if found:
        return found
    close = difflib.get_close_matches(name.lower(), list(officials) + list(aliases), n=5, cutoff=0.5)
    close = [officials.get(c, c) for c in close]
    raise ConfigError(f"model.name={name!r} is not a model TransformerLens knows"
                      + (f"; closest: {close}" if close else "") + ". Fix: one of TransformerLens's names or "
                      "aliases (transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES), or "
                      "model.local_dir=/path for a local Hugging Face folder.")


def config_json(folder: Path, what: str = "Hugging Face model folder", fix: str = _FIX) -> dict:
    """A model folder's config.json; DataError naming what is missing (`fix`: how to put it right)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"model.local_dir={folder} is not a directory. {fix}")
    path = folder / "config.json"
    if not path.is_file():
        raise DataError(f"{folder} is not a {what}: config.json is missing. {fix}")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not readable JSON ({e}). {fix}") from None


def read_config(folder: Path) -> dict:
    """config.json of a Hugging Face folder whose architecture can be converted; DataError otherwise."""
    config = config_json(folder)
    arch = (config.get("architectures") or [None])[0]
    if arch not in SUPPORTED:
        raise DataError(f"{folder} holds a {arch or config.get('model_type')!r} model, which TransformerLens cannot "
                        f"convert from a local folder. Supported: {', '.join(SUPPORTED)} (tested: "
                        f"{', '.join(TESTED)}). Fix: use one of those, or a name TransformerLens loads online.")
    return config


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (the first kind of WEIGHT_FILES present, with its shards)."""
    for name in WEIGHT_FILES:
        path = Path(folder) / name
        if path.is_file():
            if not name.endswith(".index.json"):
                return [path]
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (Path(folder) / s).is_file()]
            if missing:
                raise DataError(f"{folder}: {name} lists shards that are missing: {missing}. {_FIX}")
            return [path] + [Path(folder) / s for s in shards]
    raise DataError(f"{folder} has config.json but no weights: none of {list(WEIGHT_FILES)} is there. {_FIX}")


def provenance(name: str, local_dir: str | None = None, revision: str | None = None, **processing: bool) -> dict:
    """What a run stores to say which model it studied: source, name, revision or folder, architecture,
    sha256 of every weight file, and the weight processing asked for (defaults filled in)."""
    processing = {**PROCESSING_DEFAULTS, **processing}
    if local_dir is not None:
        folder = Path(local_dir).expanduser().resolve()
        out = {"source": "local", "name": name, "local_dir": str(folder), "revision": None}
    else:
        repo = official_name(name)
        cfg_path = hub.cached_path(repo, "config.json", revision)
        if cfg_path is None:
            raise DataError(f"{repo!r} (revision {revision or 'main'}) is not in the Hugging Face cache "
                            f"{hub.cache_location()}. {_FIX}")
        folder = cfg_path.parent
        out = {"source": "hub", "name": repo, "local_dir": None, "revision": hub.snapshot_revision(cfg_path),
               "requested_revision": revision}
    out["architecture"] = (json.loads((folder / "config.json").read_text()).get("architectures") or [None])[0]
    out["weights_sha256"] = {f.name: file_sha256(f) for f in weight_files(folder)}
    out["processing"] = processing
    return out


def hooked_config(folder: Path, config: dict, *, fold_ln: bool, n_ctx: int | None, device: str,
                  dtype: torch.dtype, label: str) -> HookedTransformerConfig:
    """The HookedTransformerConfig of a local folder, as `from_pretrained` would build it by name."""
    from transformer_lens.loading_from_pretrained import POST_NORM_ARCHITECTURES, convert_hf_model_config

    arch = config["architectures"][0]
    with warnings.catch_warnings(), hub.offline_mode():
        warnings.simplefilter("ignore")
        if arch in NAME_CONFIGURED:   # by name only, no download: the reference config, resized below
            cfg = {**convert_hf_model_config(NAME_CONFIGURED[arch]), **_resized(config)}
        else:
            # TransformerLens reads a folder's config.json but also matches words in its path ("llama",
            # "gemma") to pick hard-coded configs: it reads a copy in a folder with a neutral name
            with tempfile.TemporaryDirectory(prefix="interp-config-") as tmp:
                (Path(tmp) / "model").mkdir()
                shutil.copyfile(folder / "config.json", Path(tmp) / "model" / "config.json")
                cfg = convert_hf_model_config(str(Path(tmp) / "model"))
    if n_ctx is not None and n_ctx > cfg["n_ctx"]:
        raise ConfigError(f"model.n_ctx={n_ctx} is longer than {label}'s context {cfg['n_ctx']}: it has no "
                          f"positions beyond that. Fix: model.n_ctx=null (use {cfg['n_ctx']}) or a value up to it.")
    folds = fold_ln and arch not in POST_NORM_ARCHITECTURES and cfg.get("positional_embedding_type") != "shortformer"
    norm = cfg.get("normalization_type")
    cfg.update(model_name=label, init_weights=False, device=device, dtype=dtype, n_ctx=n_ctx or cfg["n_ctx"],
               d_vocab=config.get("vocab_size", cfg["d_vocab"]), from_checkpoint=False,
               tokenizer_name=str(folder) if has_tokenizer(folder) else None)
    if folds and norm in ("LN", "RMS"):
        cfg["normalization_type"] = norm + "Pre"
    cfg.setdefault("default_prepend_bos", True)
    return HookedTransformerConfig.from_dict(cfg)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json"))


def local_tokenizer(folder: Path, d_vocab: int):
    """The folder's own tokenizer (None if it has none); DataError if its ids do not fit the embedding."""
    if not has_tokenizer(folder):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if len(tok) > d_vocab:   # ids past the embedding; fewer is normal (embeddings padded to a round size)
        raise DataError(f"the tokenizer in {folder} has {len(tok)} tokens but the model's embedding has {d_vocab}: "
                        "its ids would fall outside the model. Fix: put the model's own tokenizer files "
                        "(tokenizer.json, tokenizer_config.json, ...) in the folder, as save_pretrained writes them.")
    return tok


# --- internals ---------------------------------------------------------------------------------------

def _resized(config: dict) -> dict:
    """A Gemma-family config.json in TransformerLens's terms (the fields that differ between sizes)."""
    text = config.get("text_config", config)
    layers, heads = text["num_hidden_layers"], text["num_attention_heads"]
    d_head = text.get("head_dim") or text["hidden_size"] // heads
    out = {"d_model": text["hidden_size"], "d_head": d_head, "n_heads": heads, "d_mlp": text["intermediate_size"],
           "n_layers": layers, "n_ctx": text["max_position_embeddings"], "eps": text["rms_norm_eps"],
           "d_vocab": text["vocab_size"], "rotary_dim": d_head,
           "rotary_base": text.get("rope_theta", (text.get("rope_parameters") or {}).get("rope_theta", 10000.0)),
           "act_fn": text.get("hidden_activation") or text.get("hidden_act")}
    kv = text.get("num_key_value_heads")
    out["n_key_value_heads"] = kv if kv and kv != heads else None
    if text.get("query_pre_attn_scalar"):
        out["attn_scale"] = text["query_pre_attn_scalar"] ** 0.5
    if "sliding_window" in text and text["sliding_window"]:
        out["window_size"] = text["sliding_window"]
        out["attn_types"] = ["local", "global"] * (layers // 2) + ["local"] * (layers % 2)
    for ours, theirs in (("attn_scores_soft_cap", "attn_logit_softcapping"),
                         ("output_logits_soft_cap", "final_logit_softcapping")):
        if theirs in text:
            out[ours] = text[theirs] if text[theirs] is not None else -1.0
    return out


def _load_local(folder: Path, label: str, config: dict, processing: dict, n_ctx, device, dtype) -> HookedTransformer:
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict
    from transformers import AutoModelForCausalLM

    weight_files(folder)   # a clear error before transformers' own
    torch_dtype = getattr(torch, dtype)
    cfg = hooked_config(folder, config, fold_ln=processing["fold_ln"], n_ctx=n_ctx, device=device,
                        dtype=torch_dtype, label=label)
    tokenizer = local_tokenizer(folder, cfg.d_vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch_dtype)
        state = get_pretrained_state_dict(str(folder), cfg, hf_model, dtype=torch_dtype)
        del hf_model
        if "pos_embed.W_pos" in state:   # learned positions: the first n_ctx (rotary ones are built for n_ctx)
            state["pos_embed.W_pos"] = state["pos_embed.W_pos"][:cfg.n_ctx]
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state, **_applicable(cfg, processing))
    return model.to(device, print_details=False)


def _applicable(cfg: HookedTransformerConfig, processing: dict) -> dict:
    """`from_pretrained`'s exceptions: no centred unembedding under logit soft-capping (not invariant to
    a constant), no folding or centring for post-norm models."""
    from transformer_lens.loading_from_pretrained import POST_NORM_ARCHITECTURES

    out = dict(processing)
    if (cfg.output_logits_soft_cap or 0) > 0:
        out["center_unembed"] = False
    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        out["fold_ln"] = out["center_writing_weights"] = False
    return out


def load_hub(repo, revision, processing, n_ctx, device, dtype, offline: bool | None = None) -> HookedTransformer:
    """`HookedTransformer.from_pretrained(repo)`, offline from the cache when the hub is unreachable."""
    offline = not hub.hub_reachable() if offline is None else offline
    if offline and hub.cached_path(repo, "config.json", revision) is None:
        why = "HF_HUB_OFFLINE is set" if hub.offline_requested() else "the Hugging Face hub is unreachable"
        raise DataError(f"{repo!r} (revision {revision or 'main'}) cannot be loaded: {why} and it is not in the "
                        f"local cache {hub.cache_location()}. {_FIX}")
    kwargs = {"revision": revision} if revision else {}
    try:
        with warnings.catch_warnings(), (hub.offline_mode() if offline else contextlib.nullcontext()):
            warnings.simplefilter("ignore", DeprecationWarning)   # TL 3.x: from_pretrained -> TransformerBridge
            return HookedTransformer.from_pretrained(repo, n_ctx=n_ctx, device=device, dtype=dtype,
                                                     **processing, **kwargs)
    except OSError as e:   # weights or tokenizer missing from the cache while offline, gated repo, ...
        raise DataError(f"{repo!r} could not be loaded ({str(e).splitlines()[0]}). {_FIX}") from None
