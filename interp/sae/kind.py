"""The `task=sae` kind: build an SAE run from a base run, and load a finished one.

The SAE run takes its model and data from the base run (so `data=` needs no
repeating), applies any `data.*=` overrides of this command on top, and
records the base run (path, checkpoint sha256, model config) in its config.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

from interp.errors import ConfigError, RunDirError
from interp.files import content_key, file_lock, file_sha256
from interp.models import is_pretrained
from interp.models.hooks import check_hook
from interp.run_dir import LoadedRun, checkpoint_path, is_done, read_checkpoint, run_config
from interp.sae.spec import parse_spec, sites
from interp.tasks.kind import TaskKind, pretrained_base, rebuild_model_run

NAME = "sae"   # the task's name in the registry and in conf/task/sae.yaml


def ensure_base_run(overrides: list[str], root: Path, base_runs_dir: Path) -> Path:
    """`base_run=auto`: train the base described by `base_overrides` once, reuse it after.

    The run lives in <paths.base_runs_dir>/<hash of the overrides>; a lock makes the jobs
    of a sweep wait for the first one instead of each training a copy.
    """
    run_dir = base_runs_dir / content_key(sorted(overrides), 12)
    with file_lock(run_dir.with_suffix(".lock")):
        if not is_done(run_dir):
            cmd = [sys.executable, str(root / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
            print(f"base_run=auto: training the base run first: {' '.join(cmd[1:])}", flush=True)
            if (rc := subprocess.run(cmd, cwd=root).returncode) != 0:
                raise RunDirError(f"training the base run failed (exit {rc}); see {run_dir}/train.log.")
    return run_dir


def load_base(base_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The model run an SAE decomposes; an SAE run is refused."""
    ckpt = checkpoint_path(base_dir)
    config, raw = read_checkpoint(ckpt)
    if config.get("task", {}).get("name") == NAME:
        raise ConfigError(f"base_run={base_dir} is itself an SAE run. Fix: pass the run the SAE should decompose.")
    return rebuild_model_run(base_dir, config, raw, ckpt, device)


def synthetic_base(model_cfg: dict, config: dict, device: str = "cpu") -> LoadedRun:
    """SAELens's synthetic model as the base of an SAE run (data=synthetic): built from its config alone, so
    the same directions, firing probabilities and tree every time; no checkpoint, no tokenizer."""
    from interp.models import build_model
    from interp.models.hooks import to_device

    return LoadedRun(None, config, to_device(build_model(model_cfg), device).eval(), None, None, 0)


def _data_overrides(overrides: list[str]) -> dict:
    dotlist = [o for o in overrides if o.startswith("data.")]
    return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist)).get("data", {}) if dotlist else {}


class SAETaskKind(TaskKind):
    trains_model_config = False   # the model is the base run's

    def build(self, cfg: DictConfig, meta: dict):
        if cfg.get("sae") is None:
            raise ConfigError("task=sae needs an SAE spec: sae=standard|topk|batchtopk|jumprelu|gated.")
        if cfg.data.get("name") == "synthetic":
            return self._build_on_synthetic(cfg, meta)
        if cfg.get("base_run") in (None, "", "???"):
            if not is_pretrained(cfg.model):
                raise ConfigError("task=sae needs the model whose activations to learn: base_run=<run dir> "
                                  "(or base_run=auto with base_overrides=[experiment=...]), or a pretrained "
                                  "model=gpt2 with data=<dataset>.")
            return self._build_on_pretrained(cfg, meta)
        root = Path(cfg.paths.root_dir)
        base_dir = (ensure_base_run(list(cfg.base_overrides), root, Path(cfg.paths.base_runs_dir))
                    if cfg.base_run == "auto" else Path(to_absolute_path(str(cfg.base_run))))
        base = load_base(base_dir)
        data = OmegaConf.merge(base.config["data"], _data_overrides(meta["overrides"]))
        base_sha = file_sha256(base.checkpoint)
        record = {"run": str(base_dir), "checkpoint": str(base.checkpoint), "checkpoint_sha256": base_sha,
                  "global_step": base.global_step, "run_name": base.config.get("run_name"),
                  "seed": base.config["seed"]}
        return self._build(cfg, meta, base, data, base_sha, record)

    def _build_on_pretrained(self, cfg: DictConfig, meta: dict):
        from interp.tasks.checks import check_compatible

        check_compatible(cfg, cfg.model.get("name", cfg.model.arch), check_task=False)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        base = pretrained_base(cfg.model, data, cfg.seed)
        provenance = base.model.provenance
        # The weights' hashes and processing identify the activations, as a checkpoint hash does.
        record = {"pretrained": provenance, "seed": cfg.seed}
        # the data as the model reads it (under model=pretrained: its own tokenizer and vocabulary)
        return self._build(cfg, meta, base, OmegaConf.create(base.config["data"]), content_key(provenance, 64),
                           record)

    def _build_on_synthetic(self, cfg: DictConfig, meta: dict):
        """SAELens's synthetic model as the base (no base run, no model to choose): its config is data.*."""
        from interp.data import build_datamodule
        from interp.data.synthetic import HOOK, model_config, true_l0

        chosen = [o for o in meta["overrides"] if o.split("=")[0].lstrip("+~") in ("model", "base_run")
                  or o.startswith(("model.", "+model."))]
        if chosen:
            raise ConfigError(f"data=synthetic brings its own model (SAELens's synthetic model, built from data.*); "
                              f"{' '.join(chosen)} has nothing to choose. Fix: drop it; the synthetic model's fields are "
                              "data.num_features, data.hidden_dim, ... (conf/data/synthetic.yaml).")
        data = OmegaConf.to_container(cfg.data, resolve=True)
        build_datamodule(data, seed=cfg.seed)   # data.* checked before SAELens builds anything
        k = cfg.sae.get("k")
        if isinstance(k, (int, float)) and not 0 < k < data["num_features"]:
            raise ConfigError(f"sae.k={k} but the synthetic model has {data['num_features']} features, about "
                              f"{true_l0(data):.0f} active per row. Fix: sae.k below data.num_features, near the true L0.")
        model_cfg = model_config(data)
        with open_dict(cfg):
            if cfg.sae.get("hook") in (None, "", "???"):
                cfg.sae.hook = HOOK
        base = synthetic_base(model_cfg, {"model": model_cfg, "data": data, "seed": cfg.seed})
        record = {"synthetic": model_cfg, "seed": cfg.seed}
        return self._build(cfg, meta, base, OmegaConf.create(data), content_key(model_cfg, 64), record)

    def _build(self, cfg: DictConfig, meta: dict, base: LoadedRun, data, base_sha: str, record: dict):
        from interp.data import build_datamodule
        from interp.data.tokenizer import tokenizer_key
        from interp.sae.dictionaries import Layout, check_budget, is_many, label, memory_bytes, split, variants
        from interp.sae.source import ActivationDataModule
        from interp.sae.spec import d_sae_of
        from interp.sae.task import SAETask

        listed = variants(OmegaConf.to_container(cfg.sae, resolve=True))
        spec, saelens = parse_spec(listed[0][0])   # what every variant shares: hooks, harvest, batch size
        where = (f"base run {record['run']}" if "run" in record else "the synthetic model" if "synthetic" in record
                 else "the pretrained model")
        where = f"{where} ({base.config['model']['arch']})"
        entries = []   # (spec, SAELens kwargs, label suffix, varied settings) of each dictionary
        for raw, suffix, settings in listed:
            spec_v, saelens_v = parse_spec(raw)
            for s in (split(spec_v, list(base.model.hook_dict)) if is_many(spec_v) else [spec_v]):
                entries.append((s, saelens_v, suffix, settings))
        many = len(entries) > 1 or is_many(spec)
        specs = [e[0] for e in entries]
        for s in specs:
            check_hook(base.model, s.hook, "sae.hook", where)
            if sites(s).transcodes:
                check_hook(base.model, s.target_hook, "sae.target_hook", where)
        seed = record["seed"]           # the base run's data splits, not new ones
        base_dm = build_datamodule(data, seed=seed)
        base_dm.setup("fit")
        with open_dict(cfg):
            cfg.model = base.config["model"]
            cfg.data = data
            cfg.base = record
        layout = Layout.of([sites(s) for s in specs]) if many else sites(spec)
        cache_fields = {"base_checkpoint_sha256": base_sha, "hook": spec.hook, "seed": seed,
                        "data": OmegaConf.to_container(data, resolve=True),
                        "n_tokens": int(spec.harvest_tokens), "dtype": spec.cache.dtype,
                        **tokenizer_key(getattr(base_dm, "tokenizer", None))}   # a model's own: its files' hashes
        if tuple(layout.hooks) != sites(specs[0]).hooks:   # one cache of every hook side by side
            cache_fields["hook"] = list(layout.hooks)
        elif sites(specs[0]).transcodes:   # an SAE's cache key stays as it was (variants on one hook share it)
            cache_fields["target_hook"] = specs[0].target_hook
        dm = ActivationDataModule(base.model, base_dm, spec, cache_fields, seed=cfg.seed, where=layout)
        widths = dict(zip(layout.hooks, dm.widths))
        layout = Layout(tuple(widths), tuple(widths.values())) if many else layout
        dictionaries, needs, records = [], {}, []
        for s, saelens, suffix, settings in entries:
            d_in, name = widths[s.hook], label(sites(s), suffix)
            if s.d_in not in (None, d_in):
                raise ConfigError(f"sae.d_in={s.d_in} but {s.hook} of the base model has width {d_in}. "
                                  "Fix: drop sae.d_in (it is read from the hook) or choose a hook of that width.")
            if sites(s).transcodes:
                check_transcoder_sites(base.model, base_dm, s, (d_in, widths[s.target_hook]))
            dictionaries.append((s, saelens, d_in, layout.columns(sites(s)) if many else slice(None), name))
            needs[name] = memory_bytes(d_in, d_sae_of(s, d_in), widths[sites(s).target], s.skip, s.batch_size)
            records.append({"label": name, "hook": s.hook, "target_hook": sites(s).target, "d_in": d_in,
                            "d_sae": d_sae_of(s, d_in), "settings": settings})
        if len(set(needs)) < len(dictionaries):
            raise ConfigError("two dictionaries of this run would have one name (the same hook and settings). "
                              "Fix: name each hook once and list each value once.")
        print(check_budget(needs, spec.memory_budget_gb), flush=True)
        with open_dict(cfg):
            cfg.sae.d_in = dictionaries[0][2] if not many else None
            if many:
                cfg.dictionaries = records
        return cfg, dm, SAETask(run_config(cfg, meta), dictionaries[0][2], base.model,
                                dictionaries if many else None)

    def load(self, run_dir, config, raw, ckpt, device):
        """The SAE (SAELens format, from <run>/sae/) and the frozen base model it was trained on."""
        import logging

        from sae_lens import SAE

        from interp.sae.dictionaries import FOLDER
        from interp.sae.task import SAE_DIR

        base = config["base"]
        saved = run_dir / FOLDER if config.get("dictionaries") else run_dir / SAE_DIR / "cfg.json"
        if not saved.exists():
            raise RunDirError(f"{run_dir} is an SAE run without {saved.parent if saved.name == 'cfg.json' else saved}: "
                              "training did not finish. "
                              "Fix: resume it with ckpt_path=<run>/checkpoints/last.ckpt.")
        if "pretrained" in base:
            base_run = pretrained_base(config["model"], config["data"], base["seed"], device)
        elif "synthetic" in base:
            base_run = synthetic_base(base["synthetic"], config, device)
        else:
            base_run = load_base(base["run"], device=device)
        if base_run.checkpoint is not None and base_run.checkpoint == Path(base["checkpoint"]) \
                and file_sha256(base_run.checkpoint) != base["checkpoint_sha256"]:
            logging.getLogger(__name__).warning(
                "the base checkpoint %s changed since this SAE was trained (sha256 differs)", base_run.checkpoint)
        saes = None
        if config.get("dictionaries"):   # a run of several: <run>/saes/<label>/ each (a failed one has none)
            saes = {d["label"]: SAE.load_from_disk(str(folder), device=device) for d in config["dictionaries"]
                    if ((folder := run_dir / FOLDER / d["label"]) / "cfg.json").is_file()}
            sae = None
        else:
            sae = SAE.load_from_disk(str(run_dir / SAE_DIR), device=device)
        return LoadedRun(run_dir, config, base_run.model, base_run.tokenizer, ckpt, int(raw.get("global_step", 0)),
                         sae, saes=saes, data_seed=base["seed"])


def check_transcoder_sites(model, base_dm, spec, widths: tuple[int, int]) -> None:
    """A transcoder reads its input hook before its target hook, and (to be trained by SAELens's classes and
    loaded as its transcoders) both have one width; ConfigError otherwise."""
    from interp.sae.harvest import execution_order

    batch = next(iter(base_dm.val_dataloader()))
    if execution_order(model, batch, (spec.hook, spec.target_hook))[0] != spec.hook:
        raise ConfigError(f"sae.target_hook={spec.target_hook} comes before sae.hook={spec.hook} in the model's "
                          "forward pass: a transcoder predicts a later activation from an earlier one. Fix: swap them, "
                          "e.g. sae.hook=blocks.0.ln2.hook_normalized sae.target_hook=blocks.0.hook_mlp_out.")
    if widths[0] != widths[1]:
        raise ConfigError(f"sae.hook={spec.hook} has width {widths[0]} but sae.target_hook={spec.target_hook} has "
                          f"width {widths[1]}; transcoders here map between hooks of one width (an MLP's input and "
                          "output). Fix: choose a target hook of the input's width.")
