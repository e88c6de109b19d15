"""Train a model: `python train.py [experiment=<preset>] [overrides]`. See README.md.

`python train.py --reproduce <run dir>` reruns a saved run from its stored overrides and says
whether its final metrics match (interp/reproduce.py).
"""

import interp.hugepages  # noqa: F401  (first: huge pages for large tensors, set before torch loads)
import sys

import hydra
from omegaconf import DictConfig

from interp.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    from interp.sweep import run_job

    return run_job(cfg)   # a sweeper's objective: optimized_metric


@exit_on_user_error
def reproduce() -> int:
    from interp.reproduce import reproduce

    return reproduce(main, sys.argv)


if __name__ == "__main__":
    from interp.cli import check_override_syntax, hydra_errors_in_one_line, multirun_flag_first

    sys.argv = multirun_flag_first(sys.argv)
    check_override_syntax(sys.argv)
    try:
        with hydra_errors_in_one_line("train.py"):
            sys.exit(reproduce()) if "--reproduce" in sys.argv else main()
    except ValueError as e:   # an Optuna search whose every trial failed: a summary, not a traceback
        from interp.sweep import no_trial_finished

        if not no_trial_finished(e):
            raise
        sys.exit(1)
