"""Pretrained SAEs through SAELens, checked against the model they will read.

- `release` + `sae_id`: `SAE.from_pretrained` (SAELens's pretrained directory maps
  them to a hub repo and folder); works online or from a pre-filled Hugging Face
  cache. With the hub unreachable and nothing cached it fails at once.
- `path`: a folder in SAELens format (cfg.json + sae_weights.safetensors), loaded
  with `SAE.load_from_disk` (what our own SAE runs save in <run>/sae/).

Given the model, the SAE's hook must exist on it, the hook's width must equal
the SAE's d_in, and weight processing the SAE's release states explicitly
(e.g. gpt2-small-res-jb: center_writing_weights) must match the model's where it
changes that hook's activations.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from sae_lens import SAE

from interp import hub
from interp.errors import ConfigError, DataError
from interp.files import file_sha256

# Weight processing (interp.models.gpt2) -> endings of the hook names whose activations it changes
# (measured on GPT-2, tests/test_pretrained_sae.py; hook_result exists only with use_attn_result).
PROCESSING_CHANGES = {
    "fold_ln": ("unembed.hook_in",),
    "center_writing_weights": ("hook_embed", "hook_pos_embed", "hook_resid_pre", "hook_resid_mid",
                               "hook_resid_post", "hook_attn_out", "hook_mlp_out", "hook_result"),
    "center_unembed": ("unembed.hook_out",),
    "fold_value_biases": ("hook_v", "hook_z", "hook_result"),
}
_FIX_OFFLINE = ("Fix: either run once with network access to the Hugging Face hub (unset HF_HUB_OFFLINE) so "
                "SAELens downloads it into the cache (HF_HUB_CACHE / HF_HOME) for later offline use, or copy "
                "an SAELens-format folder (cfg.json + sae_weights.safetensors) here and set sae.path=/path/to/folder.")


def load_pretrained_sae(release: str | None = None, sae_id: str | None = None, path: str | None = None, *,
                        model=None, hook: str | None = None, device: str = "cpu",
                        dtype: str = "float32") -> tuple[SAE, dict]:
    """(SAE in eval mode on `device`, provenance dict). Exactly one of release+sae_id or path.

    hook: where the SAE is applied (default: the hook its cfg.json records). With `model`,
    the hook and width are checked against it.
    """
    if path is not None and (release is not None or sae_id is not None):
        raise ConfigError("give either sae.path or sae.release + sae.id, not both. Fix: set the other to null.")
    if path is not None:
        sae, prov = _from_disk(Path(path).expanduser().resolve(), device, dtype)
    elif release is not None and sae_id is not None:
        sae, prov = _from_release(release, sae_id, device, dtype)
    else:
        raise ConfigError("a pretrained SAE needs sae.release and sae.id (SAELens's pretrained directory) or "
                          "sae.path (an SAELens-format folder). Fix: set them, e.g. sae.release=gpt2-small-res-jb "
                          "sae.id=blocks.6.hook_resid_pre.")
    hook = hook or sae.cfg.metadata.hook_name
    if hook is None:
        raise ConfigError(f"the SAE ({prov.get('path') or prov.get('release')}) does not record its hook "
                          "(cfg.json metadata.hook_name). Fix: set sae.hook=<hook name>.")
    if model is not None:
        check_against_model(sae, model, hook)
    prov.update(hook=hook, d_in=int(sae.cfg.d_in), d_sae=int(sae.cfg.d_sae), architecture=sae.cfg.architecture(),
                model_name=sae.cfg.metadata.model_name,
                model_from_pretrained_kwargs=sae.cfg.metadata.model_from_pretrained_kwargs)
    return sae.eval(), prov


def from_config(spec: dict, model=None, device: str = "cpu") -> tuple[SAE, dict]:
    """load_pretrained_sae from the `sae=pretrained` config group (conf/sae/pretrained.yaml)."""
    return load_pretrained_sae(spec.get("release"), spec.get("id"), spec.get("path"), model=model,
                               hook=spec.get("hook"), device=device, dtype=spec.get("dtype") or "float32")


def for_analysis(spec, model, device: str = "cpu", **override) -> SAE:
    """The SAE an analysis of `model` asks for with `sae=pretrained` (release + id, or path; `override`
    replacing some of them), checked against the model; any other `sae=` is a training spec."""
    spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
    if spec.get("architecture") != "pretrained":
        raise ConfigError(f"analyze.py loads SAEs, it does not train them: sae={spec.get('architecture')} is a "
                          "training spec. Fix: sae=pretrained with sae.release=<release> sae.id=<id> or "
                          "sae.path=<folder>, or run=<an SAE run>.")
    return from_config(spec | override, model=model, device=device)[0]


def check_against_model(sae: SAE, model, hook: str) -> None:
    """ConfigError unless `hook` exists on `model`, its width equals sae.cfg.d_in, and, where the SAE
    states model_from_pretrained_kwargs, the model's weight processing (model.provenance, set by
    interp.models.gpt2) gives the activations SAELens would feed it at that hook."""
    hooks = list(model.hook_dict)
    if hook not in hooks:
        suffix = hook.rsplit(".", 1)[-1]
        same_kind = [h for h in hooks if h.endswith("." + suffix) or h == suffix]
        close = difflib.get_close_matches(hook, hooks, n=5)
        raise ConfigError(f"the SAE's hook {hook!r} does not exist on this model. Hooks like it: "
                          f"{same_kind or close}; all {len(hooks)} hooks: {hooks}. Fix: the SAE for this model's "
                          "hook (sae.id / sae.path), or sae.hook=<one of them>.")
    trained_on, ours = sae.cfg.metadata.model_name, (getattr(model, "provenance", None) or {}).get("name")
    if trained_on and ours and None not in (a := _official(trained_on), b := _official(ours)) and a != b:
        raise ConfigError(f"the SAE was trained on {trained_on} ({a}) but the model is {ours} ({b}). Fix: "
                          f"model=pretrained model.name={trained_on}, or an SAE trained on {ours} (SAELens's "
                          "releases list their model: sae_lens.loading.pretrained_saes_directory).")
    width = hook_width(model, hook, sae.cfg.reshape_activations == "hook_z")
    if width != sae.cfg.d_in:
        raise ConfigError(f"the SAE reads vectors of width d_in={sae.cfg.d_in} but {hook} of this model is {width} "
                          f"wide (the SAE was trained on {sae.cfg.metadata.model_name or 'another model'}). Fix: "
                          "an SAE trained on this model (sae.release/sae.id or sae.path), or the model it was "
                          "trained on.")
    stated = sae.cfg.metadata.model_from_pretrained_kwargs
    processing = (getattr(model, "provenance", None) or {}).get("processing") or {}
    if not stated or not processing:   # nothing stated (or a model we did not load): nothing to compare
        return
    # SAELens loads an SAE's model with from_pretrained_no_processing(**model_from_pretrained_kwargs).
    expected = {flag: False for flag in PROCESSING_CHANGES} | stated
    for flag, endings in PROCESSING_CHANGES.items():
        if flag in processing and bool(expected[flag]) != bool(processing[flag]) and hook.endswith(endings):
            raise ConfigError(f"the SAE expects its model loaded with {flag}={expected[flag]} (SAELens: "
                              f"from_pretrained_no_processing(**{stated})), this model has {flag}={processing[flag]}, "
                              f"which changes {hook}'s activations. Fix: model.{flag}={str(expected[flag]).lower()}.")


@torch.no_grad()
def hook_width(model, hook: str, flatten_heads: bool = False) -> int:
    """Width of one position's activation at `hook` (one token through the layers up to it).
    flatten_heads: [.., n_heads, d_head] counts as n_heads * d_head (SAELens's hook_z reshaping)."""
    from interp.sae.harvest import run_to

    acts = run_to(model, torch.zeros(1, 1, dtype=torch.long), hook)[hook]
    shape = acts.shape[2:]
    if len(shape) == 2 and flatten_heads:
        return shape[0] * shape[1]
    if len(shape) != 1:
        raise ConfigError(f"{hook} gives activations of shape {list(acts.shape)}, not one vector per "
                          "token. Fix: an SAE on a [batch, pos, d] hook (or a hook_z SAE, which SAELens reshapes).")
    return int(shape[0])


def pretrained_directory():
    """SAELens's directory of pretrained SAEs: release -> PretrainedSAELookup (repo_id, model, saes_map, ...)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


# --- internals ---------------------------------------------------------------------------------------

def _official(name: str) -> str | None:
    """TransformerLens's official name for a model name, None for a name it does not know (a local label,
    a run directory): only names both sides know are compared."""
    from interp.models.pretrained import official_name

    try:
        return official_name(str(name))
    except ConfigError:
        return None


def _from_disk(folder: Path, device: str, dtype: str) -> tuple[SAE, dict]:
    from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME

    for name in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME):
        if not (folder / name).is_file():
            raise DataError(f"sae.path={folder} is not an SAELens SAE folder: {name} is missing. Fix: point sae.path "
                            "at a folder with cfg.json + sae_weights.safetensors (SAE.save_model writes them; our "
                            "SAE runs keep one in <run>/sae/), or use sae.release + sae.id.")
    with _quiet():
        sae = SAE.load_from_disk(str(folder), device=device, dtype=dtype)
    return sae, {"source": "disk", "path": str(folder), "files_sha256": _hashes(folder)}


def _from_release(release: str, sae_id: str, device: str, dtype: str) -> tuple[SAE, dict]:
    from sae_lens.loading.pretrained_saes_directory import get_config_overrides, get_repo_id_and_folder_name

    directory = pretrained_directory()
    if release not in directory and "/" not in release:   # SAELens also accepts a hub repo id as the release
        close = difflib.get_close_matches(release, directory, n=5, cutoff=0.5)
        raise ConfigError(f"{release!r} is not a release in SAELens's pretrained directory. Closest: {close}. All "
                          f"{len(directory)}: {sorted(directory)}. Fix: sae.release=<one of them>, a hub repo id "
                          "(org/name) in SAELens format, or sae.path=/path/to/folder.")
    if release in directory and sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)
        close = difflib.get_close_matches(sae_id, ids, n=5, cutoff=0.5)
        shown = ids if len(ids) <= 60 else ids[:30] + [f"... {len(ids) - 30} more"]
        raise ConfigError(f"{sae_id!r} is not an SAE of release {release!r}. Closest: {close}. Its {len(ids)} ids: "
                          f"{shown}. Fix: sae.id=<one of them>.")
    repo_id, folder = get_repo_id_and_folder_name(release, sae_id)
    prov = {"source": "hub", "release": release, "sae_id": sae_id, "repo_id": repo_id, "folder": folder}
    offline = not hub.hub_reachable()
    if offline and not _cached(repo_id, folder):
        why = "HF_HUB_OFFLINE is set" if hub.offline_requested() else "the Hugging Face hub is unreachable"
        raise DataError(f"SAE {release}/{sae_id} (hub repo {repo_id}, folder {folder}) cannot be loaded: {why} and "
                        f"it is not in the local cache {hub.cache_location()}. {_FIX_OFFLINE}")
    try:
        with _quiet(), (hub.offline_mode() if offline else contextlib.nullcontext()):
            sae = SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    except OSError as e:   # hub errors (not found, offline cache miss) are OSErrors
        raise DataError(f"SAE {release}/{sae_id} (hub repo {repo_id}, folder {folder}) could not be loaded: "
                        f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}. {_FIX_OFFLINE}") from None
    # SAELens applies the directory's config_overrides to metadata only for pre-6.0 cfg.json files.
    stated = get_config_overrides(release, sae_id).get("model_from_pretrained_kwargs")
    if stated and not sae.cfg.metadata.model_from_pretrained_kwargs:
        sae.cfg.metadata.model_from_pretrained_kwargs = dict(stated)
    snapshot = hub.cached_snapshot(repo_id)
    prov["revision"] = snapshot.name if snapshot is not None else None
    sae_dir = snapshot / folder if snapshot is not None else None
    prov["files_sha256"] = _hashes(sae_dir) if sae_dir is not None and sae_dir.is_dir() else {}
    return sae, prov


def _cached(repo_id: str, folder: str) -> bool:
    """Whether the cache holds the release's folder (or files named after it, for non-SAELens formats)."""
    snapshot = hub.cached_snapshot(repo_id)
    return snapshot is not None and ((snapshot / folder).exists() or any(snapshot.glob(f"{folder}*")))


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}



@contextlib.contextmanager
def _quiet():
    """Without SAELens's advice on how to load the model: check_against_model checks it instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="(?s).*model_from_pretrained_kwargs", category=UserWarning)
        yield
