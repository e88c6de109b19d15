"""Analyses of a saved run: `analyze(cfg)` is what `python analyze.py` does.

What is analysed (a run, a pretrained model, several SAEs) comes from interp.targets; each
requested analysis runs through interp.analyses.runner.run_analysis, the same function the training
callback calls, so `figures/<analysis>/` holds the same files either way, results.json written there.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from interp.errors import ConfigError
from interp.sae import GROUP as SAE_GROUP  # the package init only: no torch at start-up

# Keys of conf/analyze.yaml that are not analysis options.
ENTRY_KEYS = ("run", "analysis", "which", "device", "hydra", "prompt_file", "paths", "model", "data", SAE_GROUP,
              "out_dir", "seed", "wandb", "dictionary")
# Free-text options: always strings, `\n` typed on the command line becomes a newline.
TEXT_OPTIONS = ("prompt", "answer", "wrong", "clean", "corrupted", "target")
HOOKS = "hooks"   # not an analysis: lists the model's hook names and shapes
COMPARE = "feature_layers"   # compares several SAEs: a sweep directory, a list of runs, or pretrained ids
SUMMARY_TEXT = "summary.md"  # an analysis that writes one has it printed after its folder


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
    """Run the analyses `cfg.analysis` names on the run `cfg.run` (or on a pretrained `cfg.model`, or on
    several SAEs for feature_layers); return {analysis: metrics}."""
    from interp.config_schema import check_config

    check_config(cfg)   # before any loading (and the imports below, seconds): which=, device=, data.* ...
    from interp.analyses.runner import check_name, run_analysis, split_options, subject_fields
    from interp.analyze_wandb import Analysed, comparison_target, target_of
    from interp.run_dir import FIGURES_DIR
    from interp.targets import analysed_run, compared_runs, compared_subject, subject_of

    names = list(cfg.analysis) if isinstance(cfg.analysis, ListConfig) else [cfg.analysis]
    for name in names:
        check_name(name, extra=(HOOKS,))
    options = split_options([n for n in names if n != HOOKS], analysis_options(cfg))   # before any loading
    if COMPARE in names:
        if len(names) > 1:
            raise ConfigError(f"{COMPARE} compares several SAEs and runs alone. Fix: analysis={COMPARE}, then the "
                              f"others in a second command.")
        runs, root = compared_runs(cfg)
        run, subject = runs[0], compared_subject(runs)
        wandb_target = comparison_target(runs, root) if cfg.get("wandb", True) and cfg.get("run") else None
    else:
        (run, root), subject = analysed_run(cfg), None
        if run.saes and run.sae is None and (need := [n for n in names if SAE_GROUP in subject_fields(n)]):
            raise ConfigError(f"{cfg.run} trains {len(run.saes)} dictionaries; {need[0]} looks at one. Fix: add "
                              f"dictionary=<one of {', '.join(run.saes)}>, or compare them all: analysis={COMPARE}.")
        wandb_target = target_of(cfg.run, run.config, run.global_step) if cfg.get("wandb", True) and cfg.get("run") \
            else None
    done, analysed = {}, []
    for name in names:
        if name == HOOKS:
            print_hooks(run)
            continue
        subject = subject or subject_of(run)
        out_dir, started = root / FIGURES_DIR / name, time.time() - 1   # file times may be rounded down
        if run.saes and run.sae is not None and not subject.compared and SAE_GROUP in subject_fields(name):
            # one dictionary of several: its own folder
            out_dir = out_dir / next(label for label, sae in run.saes.items() if sae is run.sae)
        if (results := run_analysis(name, subject, out_dir, options[name])) is None:
            continue
        done[name] = results
        analysed.append(Analysed(name, out_dir, results, started))
        print(f"{name}: {out_dir}")
        if (summary := out_dir / SUMMARY_TEXT).is_file() and summary.stat().st_mtime >= started:
            print(summary.read_text(encoding="utf-8"))
        for key, value in results.items():
            print(f"  {key:<40} {value:.4g}")
    report_wandb(wandb_target, analysed)
    return done
