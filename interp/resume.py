"""Resuming: `python train.py ckpt_path=<run>/checkpoints/last.ckpt [overrides]`.

A run is defined by its Hydra overrides, and the checkpoint stores them. To
resume we recompose the config from the checkpoint's overrides followed by
this command's (later ones win), so `ckpt_path=...` alone continues the same
experiment, and `trainer.max_steps=...` on top extends it. The recomposed model
must equal the checkpoint's, or the weights would not fit: we refuse then and
name both.
"""

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from interp.errors import ConfigError
from interp.registry import task_kind
from interp.run_dir import read_checkpoint


def _key(override: str) -> str:
    parsed = OverridesParser.create().parse_overrides([override])[0]
    return parsed.key_or_group


def merge_overrides(saved: list[str], current: list[str]) -> list[str]:
    """Saved overrides, minus the keys that `current` sets again, then `current`."""
    current_keys = {_key(o) for o in current}
    return [o for o in saved if _key(o) not in current_keys] + list(current)


def resume_config(cfg: DictConfig) -> tuple[DictConfig, dict]:
    """The config to resume with, and the resumed run's metadata (its full overrides)."""
    saved_config, _ = read_checkpoint(cfg.ckpt_path)
    meta = saved_config.get("run_meta", {})
    hydra_cfg = HydraConfig.get()
    current = list(hydra_cfg.overrides.task)
    choices = dict(hydra_cfg.runtime.choices)
    saved_choices = meta.get("choices", {})
    for group in ("model", "data", "task"):
        asked = [o for o in current if _key(o) == group]
        if asked and saved_choices.get(group) not in (None, choices.get(group)):
            raise ConfigError(
                f"cannot resume: checkpoint {cfg.ckpt_path} was trained with {group}={saved_choices[group]} "
                f"but this command asks for {group}={choices[group]}. Fix: drop the {group}= override to continue "
                "that run, or start a new run without ckpt_path."
            )
    merged = merge_overrides(meta.get("overrides", []), current)
    new_cfg = compose(config_name=hydra_cfg.job.config_name, overrides=merged)
    new_model = OmegaConf.to_container(new_cfg.model, resolve=True)
    if task_kind(saved_config["task"]["name"]).trains_model_config and new_model != saved_config["model"]:
        diff = {k: (saved_config["model"].get(k), new_model.get(k))
                for k in set(new_model) | set(saved_config["model"]) if saved_config["model"].get(k) != new_model.get(k)}
        raise ConfigError(
            f"cannot resume: checkpoint {cfg.ckpt_path} holds a {saved_choices.get('model', saved_config['model']['arch'])} "
            f"model and this command builds a {choices.get('model')} model that differs in (checkpoint, now): {diff}. "
            "Fix: resume without model overrides, or start a new run."
        )
    overridden = {_key(o) for o in current}
    new_choices = {g: choices[g] if g in overridden else c for g, c in saved_choices.items()}
    return new_cfg, {"overrides": merged, "choices": new_choices, "resumed_from": str(cfg.ckpt_path)}
