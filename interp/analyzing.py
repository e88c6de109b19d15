"""Analyses of a saved run: `analyze(cfg)` is what `python analyze.py` does.

Each requested analysis runs through interp.analyses.runner.run_analysis, the same function
the training callback calls, so `figures/<analysis>/` holds the same files either way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from interp.errors import ConfigError
from interp.sae import GROUP as SAE_GROUP  # the package init only: no torch at start-up

# Keys of conf/analyze.yaml that are not analysis options.
ENTRY_KEYS = ("run", "analysis", "which", "device", "hydra", "prompt_file", "paths", "model", "data", SAE_GROUP,
              "out_dir", "seed", "wandb")
# Free-text options: always strings, `\n` typed on the command line becomes a newline.
TEXT_OPTIONS = ("prompt", "answer", "wrong", "clean", "corrupted")
HOOKS = "hooks"   # not an analysis: lists the model's hook names and shapes
COMPARE = "feature_layers"   # compares several SAEs: a sweep directory, a list of runs, or pretrained ids


def entry_keys(entry_config: Path) -> set[str]:
    """The keys analyze.yaml declares (others are new analysis options, given with a `+`)."""
    config = OmegaConf.to_container(OmegaConf.load(entry_config))
    groups = {key for entry in config.get("defaults", []) if isinstance(entry, dict) for key in entry}
    return set(config) | groups | {"hydra"}


def text(value) -> str:
    """A text option as the user meant it: `prompt=123` is still text, `\\n` is a newline."""
    return str(value).replace("\\n", "\n")


def read_prompt_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompt_file={path} does not exist. Fix: pass the path of a UTF-8 text file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"prompt_file={path} cannot be read as UTF-8 text ({e}). Fix: save it as UTF-8.") from None


def analysis_options(cfg: DictConfig) -> dict:
    """The analysis options of an analyze.py config: everything but the entry keys, None dropped."""
    options = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
               if k not in ENTRY_KEYS and v is not None}
    options.update({k: text(options[k]) for k in TEXT_OPTIONS if k in options})
    if cfg.get("prompt_file"):
        if "prompt" in options:
            raise ConfigError("both prompt= and prompt_file= are set. Fix: pass only one of them.")
        options["prompt"] = read_prompt_file(cfg.prompt_file)
    return options


def print_hooks(run) -> None:
    from interp.models.hooks import example_input, hook_shapes

    inputs = example_input(run.model)
    print(f"hooks of {run.model_name} on an input of shape {list(inputs.shape)}:")
    for hook, shape in hook_shapes(run.model, inputs).items():
        print(f"  {hook:<40} {list(shape)}")


def subject_of(run):
    """The model, data (the splits the model saw, set up for validation) and SAE of a loaded run."""
    from interp.data import build_datamodule
    from interp.subject import Subject

    seed = run.data_seed if run.data_seed is not None else run.config["seed"]
    dm = build_datamodule(run.config["data"], seed=seed)
    dm.setup("validate")
    return Subject(run.model, dm, run.sae)


def pretrained_sae(cfg: DictConfig, model, **override):
    """`sae=pretrained` (a SAELens SAE by release + id or path, `override` replacing some), checked against `model`."""
    from interp.sae.pretrained import from_config

    if cfg.sae.get("architecture") != "pretrained":
        raise ConfigError(f"analyze.py loads SAEs, it does not train them: sae={cfg.sae.architecture} is a "
                          "training spec. Fix: sae=pretrained with sae.release=<release> sae.id=<id> or "
                          "sae.path=<folder>, or run=<an SAE run>.")
    sae, _ = from_config(OmegaConf.to_container(cfg.sae, resolve=True) | override, model=model, device=cfg.device)
    return sae


def pretrained_target(cfg: DictConfig):
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


def sae_run_dirs(path: str) -> list[Path]:
    """`path` itself if it is a run, else every SAE run under it (a sweep directory)."""
    from interp.run_dir import CONFIG_FILE

    root = Path(path)
    if (root / CONFIG_FILE).is_file() or not root.is_dir():
        return [root]   # load_run reports what is wrong with it
    runs = sorted({c.parent.parent for c in root.rglob("sae/cfg.json") if (c.parent.parent / CONFIG_FILE).is_file()})
    if not runs:
        raise ConfigError(f"{path} holds no SAE runs (no <job>/sae/cfg.json with a config.yaml beside it). Fix: "
                          "run=<a sweep of SAE runs, e.g. multirun/<date>/<time>_lm_mix_saes>, run=[<SAE run>,...], "
                          "or train them: python train.py -m experiment=lm_mix_saes.")
    return runs


def compared_saes(cfg: DictConfig) -> tuple[list, Path]:
    """(runs, one per SAE, figures root) for feature_layers."""
    from dataclasses import replace

    from interp.runs import load_run

    if cfg.get("run"):
        if cfg.get(SAE_GROUP) is not None:
            raise ConfigError("feature_layers takes SAEs from run= or from sae=pretrained, not both. Fix: drop one.")
        given = [str(r) for r in cfg.run] if isinstance(cfg.run, ListConfig) else [str(cfg.run)]
        runs = [load_run(d, which=cfg.which, device=cfg.device) for g in given for d in sae_run_dirs(g)]
        for run in runs:
            if run.sae is None:
                raise ConfigError(f"{run.run_dir} is not an SAE run (task={run.config['task']['name']}). Fix: pass "
                                  "SAE runs (task=sae), or add sae=pretrained to compare pretrained SAEs.")
        common = Path(os.path.commonpath([str(Path(g).resolve()) for g in given]))
        root = Path(cfg.out_dir) if cfg.get("out_dir") else Path(given[0]) if len(given) == 1 else common
    else:
        base, root = pretrained_target(cfg)
        if cfg.get(SAE_GROUP) is None:
            raise ConfigError("feature_layers compares SAEs. Fix: run=<sweep dir or [runs]>, or sae=pretrained "
                              "sae.release=<release> sae.id=[<id>,<id>,...].")
        key = "path" if cfg.sae.get("path") is not None else "id"
        values = list(cfg.sae[key]) if isinstance(cfg.sae[key], ListConfig) else [cfg.sae[key]]
        runs = [replace(base, sae=pretrained_sae(cfg, base.model, **{key: value})) for value in values]
        if not cfg.get("out_dir") and len(values) > 1:   # pretrained_target named the folder after the list
            root = Path("outputs") / "pretrained" / cfg.model.get("name", cfg.model.arch) / str(
                cfg.sae.get("release") or "saes").replace("/", "__")
    return runs, root


def compared_target(cfg: DictConfig, runs: list, root: Path):
    """feature_layers' W&B target: a run in the first compared run's project and group, at `root`."""
    from dataclasses import replace

    from interp.analyze_wandb import target_of

    first = target_of(runs[0].run_dir, runs[0].config, 0) if cfg.get("wandb", True) and cfg.get("run") else None
    if first is None:
        return None
    name = first.identity["group"] or root.name
    return replace(first, run_dir=root, config={"runs": [str(run.run_dir) for run in runs]},
                   identity=first.identity | {"id": "", "name": f"{name}/{COMPARE}"})


def report_wandb(target, analysed: list) -> None:
    """Log what ran to W&B (interp.analyze_wandb) when the analysed run logged there."""
    from interp.analyze_wandb import log_analyses

    if target is None:
        return
    try:
        folder = log_analyses(target, analysed)
    except Exception as e:   # e.g. an online run with no network: the figures are written already
        print(f"W&B: not logged ({type(e).__name__}: {' '.join(str(e).split())[:300]}); the figures are in "
              f"{target.run_dir}/figures/ (wandb=false skips W&B)", flush=True)
        return
    if folder is not None:
        print(f"W&B: {folder} (upload: wandb sync {folder})")


def analyze(cfg: DictConfig) -> dict[str, dict]:
    """Run the analyses `cfg.analysis` names on the run `cfg.run` (or on a pretrained `cfg.model`);
    return {analysis: metrics}."""
    from interp.config_schema import check_config

    check_config(cfg)   # before any loading (and the imports below, seconds): which=, device=, data.* ...
    from interp.analyses.runner import check_name, run_analysis, split_options
    from interp.analyze_wandb import Analysed
    from interp.run_dir import FIGURES_DIR
    from interp.runs import load_run

    names = list(cfg.analysis) if isinstance(cfg.analysis, ListConfig) else [cfg.analysis]
    for name in names:
        check_name(name, extra=(HOOKS,))
    options = split_options([n for n in names if n != HOOKS], analysis_options(cfg))   # before any loading
    if COMPARE in names:
        if len(names) > 1:
            raise ConfigError(f"{COMPARE} compares several SAEs and runs alone. Fix: analysis={COMPARE}, then the "
                              f"others in a second command.")
        from interp.analyses.feature_layers import compare
        from interp.features.layers import table as table_text

        runs, root = compared_saes(cfg)
        out_dir, started = root / FIGURES_DIR / COMPARE, time.time() - 1
        summary = compare([subject_of(run) for run in runs], out_dir, **options[COMPARE])
        print(f"{COMPARE}: {out_dir}")
        print(table_text(summary))
        target = compared_target(cfg, runs, root)
        report_wandb(target, [Analysed(COMPARE, out_dir, {}, started)])
        return {COMPARE: summary}
    if cfg.get("run"):
        if cfg.get("model") is not None:
            raise ConfigError("both run= and model= are given. Fix: pass one: a run directory, or a pretrained model.")
        run, root = load_run(cfg.run, which=cfg.which, device=cfg.device), Path(cfg.run)
    else:
        run, root = pretrained_target(cfg)
    if cfg.get(SAE_GROUP) is not None:   # a pretrained SAE in place of (or in addition to) the run's
        run.sae = pretrained_sae(cfg, run.model)
    subject, done, analysed = None, {}, []
    for name in names:
        if name == HOOKS:
            print_hooks(run)
            continue
        subject = subject or subject_of(run)
        out_dir, started = root / FIGURES_DIR / name, time.time() - 1   # file times may be rounded down
        if (results := run_analysis(name, subject, out_dir, options[name])) is None:
            continue
        done[name] = results
        analysed.append(Analysed(name, out_dir, results, started))
        print(f"{name}: {out_dir}")
        for key, value in results.items():
            print(f"  {key:<40} {value:.4g}")
    if cfg.get("wandb", True) and cfg.get("run"):
        from interp.analyze_wandb import target_of

        report_wandb(target_of(cfg.run, run.config, run.global_step), analysed)
    return done
