"""Pretrained GPT-2 as a TransformerLens `HookedTransformer`, from the hub or a local folder.

- Hub (`local_dir=None`): `HookedTransformer.from_pretrained(name)` for the GPT-2
  sizes TransformerLens knows (`GPT2_NAMES`, aliases such as gpt2-small too);
  the files land in (or come from) the Hugging Face cache.
- Local (`local_dir=/path`): a Hugging Face GPT-2 folder (config.json + weights,
  as `GPT2LMHeadModel.save_pretrained` writes it). TransformerLens fetches the
  hub config by name even when given `hf_model=`, so we build the
  `HookedTransformerConfig` from config.json ourselves and load the weights with
  TransformerLens's own `convert_gpt2_weights` + `load_and_process_state_dict`.

Weight processing defaults to `from_pretrained`'s: fold_ln, center_writing_weights,
center_unembed, fold_value_biases all on. None of them changes the model's
log-probs; center_writing_weights changes residual-stream activations (each
write has zero mean over d_model), which is what SAELens's GPT-2 residual SAEs
expect (gpt2-small-res-jb records `center_writing_weights: true`);
fold_value_biases changes hook_v / hook_z; fold_ln changes only unembed.hook_in (the
final LayerNorm's gain and bias move into W_U); center_unembed changes the logits by a
constant per position.
The choice is recorded in `model.provenance["processing"]`.

With the hub unreachable and nothing cached this fails at once (no retries)
with both fixes in the message.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp import hub
from interp.errors import ConfigError, DataError
from interp.models.fused_ops import fuse
from interp.models.pretrained import config_json, load_hub, provenance, weight_files

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")
_FIX = ("Fix: either load it online (network access to the Hugging Face hub, unset HF_HUB_OFFLINE; it is then "
        "cached for offline use), or put a GPT-2 checkpoint (config.json + model.safetensors, as "
        "GPT2LMHeadModel.save_pretrained writes them) in a folder and set model.local_dir=/path/to/folder.")


def load_gpt2(name: str = "gpt2", local_dir: str | None = None, revision: str | None = None, *,
              fold_ln: bool = True, center_writing_weights: bool = True, center_unembed: bool = True,
              fold_value_biases: bool = True, n_ctx: int | None = None, d_vocab: int | None = None,
              device: str = "cpu", dtype: str = "float32") -> HookedTransformer:
    """GPT-2 in eval mode with `model.provenance` (see `gpt2_provenance`).

    n_ctx: None = the checkpoint's context (n_positions); smaller keeps the first n_ctx
    position embeddings. d_vocab: None, or asserted equal to the checkpoint's vocabulary.
    """
    processing = {"fold_ln": fold_ln, "center_writing_weights": center_writing_weights,
                  "center_unembed": center_unembed, "fold_value_biases": fold_value_biases}
    if local_dir is not None:
        folder = Path(local_dir).expanduser().resolve()
        config = read_gpt2_config(folder)
        _check_sizes(config, n_ctx, d_vocab, where=str(folder))
        model = _load_local(folder, name, config, processing, n_ctx, device, dtype)
    else:
        repo = official_name(name)
        offline = not hub.hub_reachable()
        config = read_gpt2_config(_hub_config_dir(repo, revision, offline))
        _check_sizes(config, n_ctx, d_vocab, where=repo)
        model = load_hub(repo, revision, processing, n_ctx, device, dtype, offline)
    fuse(model).eval()
    model.provenance = gpt2_provenance(name, local_dir, revision, **processing)
    return model


def official_name(name: str) -> str:
    """TransformerLens's official name for a GPT-2 name or alias; ConfigError listing the valid ones."""
    from transformer_lens.loading_from_pretrained import MODEL_ALIASES

    aliases = {a: official for official in GPT2_NAMES for a in MODEL_ALIASES.get(official, [])}
    if name in GPT2_NAMES or name in aliases:
        return aliases.get(name, name)
    raise ConfigError(f"model.name={name!r} is not a GPT-2 that TransformerLens knows. Valid: {list(GPT2_NAMES)} "
                      f"(aliases: {sorted(aliases)}). Fix: use one of them, or model.local_dir=/path for a local "
                      "GPT-2 checkpoint.")


def read_gpt2_config(folder: Path) -> dict:
    """config.json of a Hugging Face GPT-2 folder; DataError naming what is missing."""
    config = config_json(folder, "Hugging Face GPT-2 checkpoint", _FIX)
    if config.get("model_type") != "gpt2":
        raise DataError(f"{folder} holds a {config.get('model_type')!r} model (config.json model_type), not GPT-2. "
                        f"{_FIX}")
    return config


def hooked_config(config: dict, n_ctx: int | None = None, fold_ln: bool = True, device: str = "cpu",
                  dtype: str = "float32", model_name: str = "gpt2") -> HookedTransformerConfig:
    """The HookedTransformerConfig TransformerLens would build for this GPT-2 config.json.

    transformers 5 writes n_positions (not n_ctx) into GPT2Config; the hub's gpt2 files have both.
    """
    d_model, n_heads = config["n_embd"], config["n_head"]
    return HookedTransformerConfig(
        n_layers=config["n_layer"], d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
        d_mlp=config.get("n_inner") or 4 * d_model, n_ctx=n_ctx or _max_ctx(config), d_vocab=config["vocab_size"],
        eps=config.get("layer_norm_epsilon", 1e-5), act_fn=config.get("activation_function", "gelu_new"),
        use_attn_scale=config.get("scale_attn_weights", True),
        scale_attn_by_inverse_layer_idx=config.get("scale_attn_by_inverse_layer_idx", False),
        normalization_type="LNPre" if fold_ln else "LN",   # as from_pretrained: folded LN has no weights left
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        model_name=model_name, init_weights=False, default_prepend_bos=True, device=device,
        dtype=getattr(torch, dtype),
    )


def gpt2_provenance(name: str = "gpt2", local_dir: str | None = None, revision: str | None = None,
                    **processing: bool) -> dict:
    """What a run stores to say which GPT-2 it studied (interp.models.pretrained.provenance: source, name,
    revision or folder, sha256 of every weight file, the weight processing); a name that is no GPT-2 is
    refused first."""
    if local_dir is None:
        official_name(name)
    return provenance(name, local_dir, revision, **processing)


# --- internals ---------------------------------------------------------------------------------------

def _max_ctx(config: dict) -> int:
    return int(config.get("n_positions") or config["n_ctx"])


def _check_sizes(config: dict, n_ctx: int | None, d_vocab: int | None, where: str) -> None:
    if n_ctx is not None and n_ctx > _max_ctx(config):
        raise ConfigError(f"model.n_ctx={n_ctx} is longer than the GPT-2 checkpoint's context {_max_ctx(config)} "
                          f"({where}): it has no position embeddings beyond that. Fix: model.n_ctx=null (use "
                          f"{_max_ctx(config)}) or a value up to it.")
    if d_vocab is not None and d_vocab != config["vocab_size"]:
        raise ConfigError(f"model.d_vocab={d_vocab} but the GPT-2 checkpoint ({where}) has vocab_size "
                          f"{config['vocab_size']}. Fix: model.d_vocab={config['vocab_size']}.")


def _hub_config_dir(repo: str, revision: str | None, offline: bool) -> Path:
    """The cached snapshot folder holding the repo's config.json, downloading it when online."""
    if not offline:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, "config.json", revision=revision)).parent
        except Exception as e:  # noqa: BLE001 - unknown revision, auth, network dropped mid-way
            raise DataError(f"could not download config.json of {repo!r} (revision {revision or 'main'}): "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. {_FIX}") from None
    path = hub.cached_path(repo, "config.json", revision)
    if path is None:
        why = "HF_HUB_OFFLINE is set" if hub.offline_requested() else "the Hugging Face hub is unreachable"
        raise DataError(f"GPT-2 {repo!r} (revision {revision or 'main'}) cannot be loaded: {why} and it is not in "
                        f"the local cache {hub.cache_location()}. {_FIX}")
    return path.parent


def _load_local(folder: Path, name, config, processing, n_ctx, device, dtype) -> HookedTransformer:
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    weight_files(folder)   # a clear error before transformers' own
    cfg = hooked_config(config, n_ctx, processing["fold_ln"], device, dtype, model_name=name)
    hf_model = GPT2LMHeadModel.from_pretrained(folder, local_files_only=True, dtype=cfg.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=_local_tokenizer(folder, cfg.d_vocab), move_to_device=False)
    model.load_and_process_state_dict(convert_gpt2_weights(hf_model, cfg), **processing)
    return model.to(device, print_details=False)


def _local_tokenizer(folder: Path, d_vocab: int):
    """The folder's own tokenizer, if it has one, so model.to_tokens / to_string work; else None
    (the project's interp.data.tokenizer.Tokenizer(50257) gives the same ids)."""
    if not ((folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if len(tok) != d_vocab:   # guards against tokenizer files that silently build a tiny vocabulary
        raise DataError(f"the tokenizer files in {folder} give {len(tok)} tokens, the model has {d_vocab}. "
                        "Fix: remove them (tokenize with interp.data.tokenizer.Tokenizer) or replace them with "
                        "GPT-2's vocab.json + merges.txt.")
    return tok

