"""Analyse a saved run: `python analyze.py run=<run dir> analysis=<name>|[names]`.

`python analyze.py run=<run> hooks` lists the model's hook names and shapes.
Options go to every analysis as keyword arguments: the declared ones
(`prompt=...`, `answer=`, `wrong=`, `clean=`, `corrupted=`, see conf/analyze.yaml)
and any other with a `+`, e.g. `+n_batch=8`. An analysis that does not apply to
the run's model prints `skipped <name>: <reason>` and the others still run.
"""

import interp.hugepages  # noqa: F401  (first: huge pages for large tensors, set before torch loads)
import json
import sys

import hydra
from omegaconf import DictConfig, ListConfig

from interp.errors import exit_on_user_error


def _bare_names_to_overrides(argv: list[str]) -> list[str]:
    """Sugar: `analyze.py run=... hooks` means `analysis=hooks` (not after a `--flag value`)."""
    out = argv[:1]
    for prev, arg in zip(argv, argv[1:]):
        bare = "=" not in arg and not arg.startswith("-") and not prev.startswith("-")
        out.append(f"analysis={arg}" if bare else arg)
    return out


sys.argv = _bare_names_to_overrides(sys.argv)
ENTRY_KEYS = ("run", "analysis", "which", "device", "hydra")   # everything else is an analysis option
TEXT_OPTIONS = ("prompt", "answer", "wrong", "clean", "corrupted")


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from pathlib import Path

    from omegaconf import OmegaConf

    from interp.analyses import ANALYSES
    from interp.analyses.hooks import example_input, hook_shapes
    from interp.analyses.inputs import NotApplicable
    from interp.data import build_datamodule
    from interp.errors import ConfigError
    from interp.runs import load_run

    names = list(cfg.analysis) if isinstance(cfg.analysis, ListConfig) else [cfg.analysis]
    valid = ["hooks", *sorted(ANALYSES)]
    if unknown := [n for n in names if n not in valid]:
        raise ConfigError(f"unknown analysis {unknown}; valid: {valid}.")
    options = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
               if k not in ENTRY_KEYS and v is not None}
    options.update({k: str(options[k]) for k in TEXT_OPTIONS if k in options})   # prompt=123 is still text
    run = load_run(cfg.run, which=cfg.which, device=cfg.device)
    dm = None
    for name in names:
        if name == "hooks":
            inputs = example_input(run.model, run.config)
            print(f"hooks of {run.config['run_meta']['choices'].get('model', run.config['model']['arch'])} "
                  f"on an input of shape {list(inputs.shape)}:")
            for hook, shape in hook_shapes(run.model, inputs.to(cfg.device)).items():
                print(f"  {hook:<40} {list(shape)}")
            continue
        if dm is None:
            dm = build_datamodule(run.config["data"], seed=run.config["seed"])
            dm.setup("validate")
        out_dir = Path(cfg.run) / "figures" / name
        try:
            results = ANALYSES[name](run.model, dm, out_dir, **options)
        except NotApplicable as e:
            print(f"skipped {name}: {e}")
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: {out_dir}")
        for key, value in results.items():
            print(f"  {key:<40} {value:.4g}")


if __name__ == "__main__":
    main()
