"""What `analyze.py` looks at, from its config: one run (`run=`), a pretrained model (`model=gpt2
data=...`), optionally with a pretrained SAE (`sae=pretrained`), or several SAEs to compare (a sweep
directory, a list of runs, or pretrained ids); each with the folder its figures go to.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from interp.errors import ConfigError
from interp.sae import GROUP as SAE_GROUP
from interp.sae.pretrained import for_analysis
from interp.sae.sites import sites_of


def subject_of(run, compared: tuple = ()):
    """The model, data (the splits the model saw, set up for validation) and SAE of a loaded run."""
    from interp.data import build_datamodule
    from interp.subject import Subject

    seed = run.data_seed if run.data_seed is not None else run.config["seed"]
    dm = build_datamodule(run.config["data"], seed=seed)
    dm.setup("validate")
    return Subject(run.model, dm, run.sae, compared, run.dictionaries)


def pretrained_run(cfg: DictConfig):
    """(LoadedRun-like run, figures root) for `model=<pretrained> data=<dataset>` without a run directory."""
    from interp.models import is_pretrained
    from interp.tasks.kind import pretrained_base

    if cfg.get("model") is None:
        raise ConfigError("nothing to analyse. Fix: run=<run dir> (outputs/..., multirun/...), or a pretrained "
                          "model: model=gpt2 data=<dataset> (e.g. data=code data.vocab_size=50257).")
    if not is_pretrained(cfg.model):
        raise ConfigError(f"model={cfg.model.arch} is trained here, not loaded: its weights live in a run. "
                          "Fix: run=<run dir of that model>, or model=gpt2.")
    if cfg.get("data") is None:
        raise ConfigError("a pretrained model needs data for its analyses (validation examples, the tokenizer). "
                          "Fix: add data=code data.vocab_size=50257 (or another dataset).")
    run = pretrained_base(cfg.model, OmegaConf.to_container(cfg.data, resolve=True), cfg.seed, cfg.device)
    name = cfg.model.get("name", cfg.model.arch)
    root = Path(cfg.out_dir) if cfg.get("out_dir") else Path("outputs") / "pretrained" / name
    if cfg.get(SAE_GROUP) is not None:
        label = cfg.sae.get("path") or f"{cfg.sae.get('release')}/{cfg.sae.get('id')}"
        root = root if cfg.get("out_dir") else root / str(label).strip("/").replace("/", "__")
    return run, root


def analysed_run(cfg: DictConfig):
    """(run, figures root): `run=<dir>` loaded, or a pretrained model; `sae=pretrained` in place of its SAE."""
    from interp.runs.load import load_run

    if cfg.get("run"):
        if cfg.get("model") is not None:
            raise ConfigError("both run= and model= are given. Fix: pass one: a run directory, or a pretrained model.")
        run, root = load_run(cfg.run, which=cfg.which, device=cfg.device), Path(cfg.run)
    else:
        run, root = pretrained_run(cfg)
    if cfg.get(SAE_GROUP) is not None:   # pretrained SAEs in place of (or in addition to) the run's
        key, values = pretrained_ids(cfg)
        if len(values) == 1:
            run.sae = for_analysis(cfg.sae, run.model, cfg.device, **{key: values[0]})
        else:   # several (e.g. a transcoder per layer): the run's dictionaries, by the hook each writes
            saes = [for_analysis(cfg.sae, run.model, cfg.device, **{key: value}) for value in values]
            labels = [sites_of(sae).target for sae in saes]
            labels = labels if len(set(labels)) == len(labels) else [str(v) for v in values]
            run = replace(run, sae=None, saes=dict(zip(labels, saes)))
            run.sae = chosen_dictionary(run, cfg.get("dictionary"))
    elif cfg.get("dictionary") is not None or run.saes:
        run.sae = chosen_dictionary(run, cfg.get("dictionary"))
    return run, root


def pretrained_ids(cfg: DictConfig) -> tuple[str, list]:
    """("path" or "id", its values): `sae=pretrained` with one SAE or a list of them."""
    key = "path" if cfg.sae.get("path") is not None else "id"
    value = cfg.sae.get(key)
    return key, list(value) if isinstance(value, ListConfig) else [value]


def chosen_dictionary(run, name: str | None):
    """The dictionary `dictionary=<label>` picks from a run of several (the only one when it has one)."""
    saes = run.saes or {}
    if name is None:
        return next(iter(saes.values())) if len(saes) == 1 else None
    if not saes:
        raise ConfigError(f"dictionary={name} picks one of a run's several dictionaries, but {run.run_dir} trains "
                          "one (or none). Fix: drop dictionary=.")
    if str(name) not in saes:
        raise ConfigError(f"dictionary={name} is not one of this run's dictionaries: {', '.join(saes)}. "
                          "Fix: dictionary=<one of them>.")
    return saes[str(name)]


def sae_run_dirs(path: str) -> list[Path]:
    """`path` itself if it is a run, else every SAE run under it (a sweep directory)."""
    from interp.run_dir import CONFIG_FILE

    root = Path(path)
    if (root / CONFIG_FILE).is_file() or not root.is_dir():
        return [root]   # load_run reports what is wrong with it
    runs = sorted({c.parent.parent for c in root.rglob("sae/cfg.json") if (c.parent.parent / CONFIG_FILE).is_file()})
    if not runs:
        raise ConfigError(f"{path} holds no SAE runs (no <job>/sae/cfg.json with a config.yaml beside it). Fix: "
                          "run=<a sweep of SAE runs, e.g. multirun/<date>/<time>_lm_mix_saes_sweep>, a run of several "
                          "dictionaries, run=[<SAE run>,...], or train them: python train.py experiment=lm_mix_saes.")
    return runs


def compared_runs(cfg: DictConfig) -> tuple[list, Path]:
    """(runs, one per SAE, figures root) for an analysis that compares SAEs (feature_layers)."""
    from interp.runs.load import load_run

    if cfg.get("run"):
        if cfg.get(SAE_GROUP) is not None:
            raise ConfigError("feature_layers takes SAEs from run= or from sae=pretrained, not both. Fix: drop one.")
        given = [str(r) for r in cfg.run] if isinstance(cfg.run, ListConfig) else [str(cfg.run)]
        runs = [load_run(d, which=cfg.which, device=cfg.device) for g in given for d in sae_run_dirs(g)]
        runs = [replace(run, sae=sae) for run in runs for sae in (run.saes or {None: run.sae}).values()]
        for run in runs:
            if run.sae is None:
                raise ConfigError(f"{run.run_dir} is not an SAE run (task={run.config['task']['name']}). Fix: pass "
                                  "SAE runs (task=sae), or add sae=pretrained to compare pretrained SAEs.")
        common = Path(os.path.commonpath([str(Path(g).resolve()) for g in given]))
        root = Path(cfg.out_dir) if cfg.get("out_dir") else Path(given[0]) if len(given) == 1 else common
        return runs, root
    base, root = pretrained_run(cfg)
    if cfg.get(SAE_GROUP) is None:
        raise ConfigError("feature_layers compares SAEs. Fix: run=<sweep dir or [runs]>, or sae=pretrained "
                          "sae.release=<release> sae.id=[<id>,<id>,...].")
    key, values = pretrained_ids(cfg)
    runs = [replace(base, sae=for_analysis(cfg.sae, base.model, cfg.device, **{key: value})) for value in values]
    if not cfg.get("out_dir") and len(values) > 1:   # pretrained_run named the folder after the list
        root = Path("outputs") / "pretrained" / cfg.model.get("name", cfg.model.arch) / str(
            cfg.sae.get("release") or "saes").replace("/", "__")
    return runs, root


def compared_subject(runs: list):
    """One Subject for an analysis comparing SAEs: the first run's model and data, every run as `compared`."""
    subjects = tuple(subject_of(run) for run in runs)
    return replace(subjects[0], sae=None, compared=subjects)
