"""Rebuild a trained run from its checkpoint alone: no sizes typed by hand."""

from dataclasses import dataclass
from pathlib import Path

import torch
from transformer_lens import HookedRootModule, HookedTransformer

from interp.errors import RunDirError
from interp.runs.contract import checkpoint_path


@dataclass
class LoadedRun:
    run_dir: Path
    config: dict
    model: HookedRootModule
    tokenizer: object | None     # interp.data.tokenizer.Tokenizer for language models
    checkpoint: Path
    global_step: int
    sae: object | None = None    # SAE runs: the trained sae_lens.SAE (from <run>/sae/), on `device`


def load_checkpoint_config(ckpt: str | Path) -> tuple[dict, dict]:
    """(resolved run config, raw checkpoint) of an interp checkpoint; RunDirError otherwise."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise RunDirError(f"checkpoint {str(ckpt)!r} does not exist. Fix: point to <run>/checkpoints/last.ckpt.")
    try:
        raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise RunDirError(f"{ckpt} is not a readable PyTorch checkpoint ({type(e).__name__}: {e}).") from e
    config = (raw.get("hyper_parameters") or {}).get("config") if isinstance(raw, dict) else None
    if not isinstance(config, dict) or "model" not in config:
        raise RunDirError(f"{ckpt} was not written by interp's train.py (no run config inside it).")
    return config, raw


def load_run(run_dir: str | Path, which: str = "last", device: str = "cpu") -> LoadedRun:
    """Model (eval mode, on `device`), config and tokenizer of a run directory."""
    from interp.data.tokenizer import Tokenizer
    from interp.models import build_model

    ckpt = checkpoint_path(run_dir, which)
    config, raw = load_checkpoint_config(ckpt)
    if config.get("task", {}).get("name") == "sae":
        return _load_sae_run(Path(run_dir), config, ckpt, raw, device)
    model = build_model(config["model"])
    state = {k.removeprefix("model."): v for k, v in raw["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    if isinstance(model, HookedTransformer):
        model.to(device, print_details=False)  # also updates model.cfg.device
    else:
        model.to(device)
    model.eval()
    tokenizer = Tokenizer(config["data"]["vocab_size"]) if config["model"]["kind"] == "lm" else None
    return LoadedRun(Path(run_dir), config, model, tokenizer, ckpt, int(raw.get("global_step", 0)))


def _load_sae_run(run_dir: Path, config: dict, ckpt: Path, raw: dict, device: str) -> LoadedRun:
    """An SAE run: its SAE (SAELens format) and the frozen base model it was trained on."""
    import logging

    from sae_lens import SAE

    from interp.sae.cache import file_sha256

    base = config["base"]
    if not (run_dir / "sae" / "cfg.json").is_file():
        raise RunDirError(f"{run_dir} is an SAE run without {run_dir / 'sae'}: training did not finish. "
                          "Fix: resume it with ckpt_path=<run>/checkpoints/last.ckpt.")
    base_run = load_run(base["run"], device=device)
    if base_run.checkpoint == Path(base["checkpoint"]) and file_sha256(base_run.checkpoint) != base["checkpoint_sha256"]:
        logging.getLogger(__name__).warning(
            "the base checkpoint %s changed since this SAE was trained (sha256 differs)", base_run.checkpoint)
    sae = SAE.load_from_disk(str(run_dir / "sae"), device=device)
    return LoadedRun(run_dir, config, base_run.model, base_run.tokenizer, ckpt, int(raw.get("global_step", 0)), sae)
