"""Task kinds: how `train()` builds a task and how `load_run()` rebuilds a finished run.

Every entry of the task registry (interp/registry.py) is a TaskKind. `train()` and
`load_run()` only ever call these two methods, so adding a task touches no other code.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from interp.errors import ConfigError
from interp.run_dir import LoadedRun, run_config


class TaskKind:
    """One kind of training run (the `task` config group's `name`)."""

    #: True when the run trains the model that `cfg.model` describes, so resuming must rebuild
    #: exactly that model; False when the model comes from elsewhere (an SAE's base run).
    trains_model_config = True

    def build(self, cfg: DictConfig, meta: dict) -> tuple[DictConfig, pl.LightningDataModule, pl.LightningModule]:
        """(final config, datamodule, LightningModule) for a run of `cfg`; `meta` is its run_meta."""
        raise NotImplementedError

    def load(self, run_dir: Path, config: dict, raw: dict, ckpt: Path, device: str) -> LoadedRun:
        """Rebuild a finished run from its checkpoint (`config` and `raw` as read from `ckpt`)."""
        raise NotImplementedError


class ModelTaskKind(TaskKind):
    """Tasks that train `cfg.model` on `cfg.data` (language modelling, regression)."""

    def __init__(self, module_cls: type[pl.LightningModule]):
        self.module_cls = module_cls

    def build(self, cfg, meta):
        from interp.data import build_datamodule
        from interp.tasks.checks import check_compatible

        check_compatible(cfg, meta["choices"].get("model", cfg.model.arch))
        if cfg.optim.get("lr") is None:   # only a dictionary run picks its own (per width)
            raise ConfigError("optim.lr=null: this task trains its model at optim.lr and has no rule of its own. "
                              "Fix: set optim.lr to a number (e.g. optim.lr=1e-3).")
        if cfg.optim.get("schedule") is None:
            raise ConfigError("optim.schedule=null: this task has no recipe to pick one. "
                              "Fix: optim.schedule=constant, cosine or linear.")
        return cfg, build_datamodule(cfg.data, seed=cfg.seed), self.module_cls(run_config(cfg, meta))

    def load(self, run_dir, config, raw, ckpt, device):
        return rebuild_model_run(run_dir, config, raw, ckpt, device)


def rebuild_model_run(run_dir: str | Path, config: dict, raw: dict, ckpt: Path, device: str = "cpu") -> LoadedRun:
    """The trained model of a model-task checkpoint (eval mode, on `device`) and its tokenizer."""
    from interp.data.tokenizer import tokenizer_for
    from interp.models import build_model
    from interp.models.hooks import to_device

    model = build_model(config["model"])
    model.load_state_dict({k.removeprefix("model."): v for k, v in raw["state_dict"].items() if k.startswith("model.")})
    to_device(model, device).eval()
    tokenizer = tokenizer_for(config["data"]) if config["model"]["kind"] == "lm" else None
    return LoadedRun(Path(run_dir), config, model, tokenizer, ckpt, int(raw.get("global_step", 0)))


def pretrained_base(model_cfg, data_cfg, seed: int, device: str = "cpu") -> LoadedRun:
    """A pretrained model (model=gpt2, model=pretrained) as the base: its weights come from the hub or local
    files, its data from this run's data group, tokenized with the model's own tokenizer under
    model=pretrained (config["data"]["tokenizer"]). `config["base"]` of the SAE run records its provenance."""
    from interp.data.hf_tokenizer import tokenizer_spec
    from interp.data.tokenizer import tokenizer_for
    from interp.models import build_model
    from interp.models.hooks import to_device

    model_cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    model = to_device(build_model(model_cfg), device).eval()
    data = dict(data_cfg)
    if model_cfg.get("arch") == "pretrained":
        data.update(tokenizer=tokenizer_spec(model_cfg, model), vocab_size=model.cfg.d_vocab)
    config = {"model": model_cfg, "data": data, "seed": seed}
    return LoadedRun(None, config, model, tokenizer_for(data), None, 0)
