"""Turn a composed `task=sae` config into (config, datamodule, task) for training.train.

The SAE run takes its model and data from the base run (so `data=` needs no
repeating), applies any `data.*=` overrides of this command on top, and
records the base run (path, checkpoint sha256, model config) in its config.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

from interp.analyses.inputs import check_hook
from interp.errors import ConfigError, RunDirError
from interp.runs import load_run
from interp.sae.cache import file_lock, file_sha256


def ensure_base_run(overrides: list[str], root: Path, base_runs_dir: Path) -> Path:
    """`base_run=auto`: train the base described by `base_overrides` once, reuse it after.

    The run lives in <paths.base_runs_dir>/<hash of the overrides>; a lock makes the jobs
    of a sweep wait for the first one instead of each training a copy.
    """
    key = hashlib.sha256(json.dumps(sorted(overrides)).encode()).hexdigest()[:12]
    run_dir = base_runs_dir / key
    with file_lock(run_dir.with_suffix(".lock")):
        if not (run_dir / "metrics.json").is_file():
            cmd = [sys.executable, str(root / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
            print(f"base_run=auto: training the base run first: {' '.join(cmd[1:])}", flush=True)
            if (rc := subprocess.run(cmd, cwd=root).returncode) != 0:
                raise RunDirError(f"training the base run failed (exit {rc}); see {run_dir}/train.log.")
    return run_dir


def _data_overrides(overrides: list[str]) -> dict:
    dotlist = [o for o in overrides if o.startswith("data.")]
    return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist)).get("data", {}) if dotlist else {}


def prepare(cfg: DictConfig, meta: dict):
    from interp.data import build_datamodule
    from interp.sae.source import ActivationDataModule
    from interp.sae.task import SAETask

    if cfg.get("base_run") in (None, "", "???"):
        raise ConfigError("task=sae needs the run whose activations to learn: base_run=<run dir> "
                          "(or base_run=auto with base_overrides=[experiment=...]).")
    root = Path(cfg.paths.root_dir)
    base_dir = (ensure_base_run(list(cfg.base_overrides), root, Path(cfg.paths.base_runs_dir)) if cfg.base_run == "auto"
                else Path(to_absolute_path(str(cfg.base_run))))
    base = load_run(base_dir)
    if base.config.get("task", {}).get("name") == "sae":
        raise ConfigError(f"base_run={base_dir} is itself an SAE run. Fix: pass the run the SAE should decompose.")
    spec = cfg.get("sae")
    if spec is None:
        raise ConfigError("task=sae needs an SAE spec: sae=standard|topk|batchtopk|jumprelu|gated.")
    check_hook(base.model, spec.hook, "sae.hook", f"base run {base_dir} ({base.config['model']['arch']})")

    data = OmegaConf.merge(base.config["data"], _data_overrides(meta["overrides"]))
    seed = base.config["seed"]           # the base run's data splits, not new ones
    base_dm = build_datamodule(data, seed=seed)
    base_dm.setup("fit")
    base_sha = file_sha256(base.checkpoint)
    with open_dict(cfg):
        cfg.model = base.config["model"]
        cfg.data = data
        cfg.base = {"run": str(base_dir), "checkpoint": str(base.checkpoint), "checkpoint_sha256": base_sha,
                    "global_step": base.global_step, "run_name": base.config.get("run_name"), "seed": seed}
    cache_fields = {"base_checkpoint_sha256": base_sha, "hook": spec.hook, "seed": seed,
                    "data": OmegaConf.to_container(data, resolve=True),
                    "n_tokens": int(spec.harvest_tokens), "dtype": spec.cache.dtype}
    dm = ActivationDataModule(base.model, base_dm, OmegaConf.to_container(spec, resolve=True), cache_fields,
                              str(spec.cache.root), seed=cfg.seed)
    d_in = dm.d_in
    if spec.get("d_in") not in (None, d_in):
        raise ConfigError(f"sae.d_in={spec.d_in} but {spec.hook} of the base model has width {d_in}. "
                          "Fix: drop sae.d_in (it is read from the hook) or choose a hook of that width.")
    with open_dict(cfg):
        cfg.sae.d_in = d_in
    config = OmegaConf.to_container(cfg, resolve=True)
    config["run_meta"] = meta
    return cfg, dm, SAETask(config, d_in, base.model)
