"""Sweeps that survive their jobs: one failing job is recorded and the others go on.

Hydra's sweepers stop a sweep at the first job whose task function raises (the basic
sweeper reads every job's return value and re-raises). So in a multirun `run_job` catches
the error after `train()` has recorded it in the job's metrics.json and W&B run, and returns
None (the Optuna sweeper marks that trial failed and goes on). `SweepSummary`, a Hydra
callback (conf/hydra/default.yaml), then prints done / failed per job from the jobs' metrics.json
and exits 1 if any failed. It reads files, not memory, so it works for every launcher
(joblib workers and submitit processes included).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from interp.errors import ConfigError, InterpError
from interp.run_dir import METRICS_FILE, STATUS_DONE, STATUS_FAILED, read_metrics

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig) -> float | None:
    """train.py's task: check the config, train, then return `optimized_metric` (None if unset or if the
    job failed in a multirun; a single run re-raises)."""
    from interp.config_schema import check_config

    multirun, refused = HydraConfig.get().mode == RunMode.MULTIRUN, None
    try:
        check_config(cfg)   # before any work, and before the imports below (seconds)
    except ConfigError as e:
        if not multirun:
            raise           # a single run refused here writes nothing
        refused = e
    import wandb

    from interp.training import optimized_value, record_failure, train

    failed = True
    try:
        if refused is not None:   # a sweep job that fails has its metrics.json, as any job that raises
            record_failure(cfg, refused, None)
            raise refused
        metrics = train(cfg)
        failed = False
    except Exception as e:
        if not multirun:
            raise
        job = HydraConfig.get().job.num
        if isinstance(e, InterpError):
            print(f"error: job {job}: {e}", file=sys.stderr, flush=True)
        else:
            log.exception("job %s failed", job)
        return None
    finally:
        wandb.finish(exit_code=1 if failed else 0)   # each job of a multirun gets its own W&B run
    return optimized_value(cfg, metrics)


def job_statuses(sweep_dir: str | Path) -> list[tuple[Path, str, str]]:
    """(job dir, status, one-line reason) for every job Hydra started in `sweep_dir`."""
    jobs = sorted((p.parent for p in Path(sweep_dir).glob("*/.hydra")),
                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    out = []
    for job in jobs:
        if not (job / METRICS_FILE).is_file():
            out.append((job, STATUS_FAILED, "no metrics.json: the job was killed (out of memory?) or is still running"))
            continue
        metrics = read_metrics(job)
        status = metrics.get("status", STATUS_DONE)
        reason = "" if status == STATUS_DONE else f"{metrics.get('error_type', '')}: {metrics.get('error', '')}"
        out.append((job, status, reason))
    return out


def summary(sweep_dir: str | Path) -> tuple[str, bool]:
    """The end-of-sweep report, and whether every job is done."""
    statuses = job_statuses(sweep_dir)
    failed = [(job, reason) for job, status, reason in statuses if status != STATUS_DONE]
    lines = [f"sweep {sweep_dir}: {len(statuses) - len(failed)} done, {len(failed)} failed"]
    lines += [f"  failed {job.name}: {reason}" for job, reason in failed]
    return "\n".join(lines), not failed


def no_trial_finished(error: BaseException) -> bool:
    """After a search whose every trial failed: print the sweep's summary and say why there is no result.

    hydra-optuna-sweeper asks the study for its best trial after the last batch; with none finished that
    raises `ValueError: No trials are completed yet.` and Hydra's end-of-sweep callbacks (SweepSummary)
    never run. train.py calls this on the way out; False means `error` is something else.
    """
    if not (isinstance(error, ValueError) and "No trials are completed" in str(error)):
        return False
    if SweepSummary.sweep_dir is None:
        return False
    text, _ = summary(SweepSummary.sweep_dir)
    print(f"{text}\nerror: no trial finished, so the search has no best parameters (no optimization_results.yaml). "
          "Fix: correct what the failures above say, then run the search again.", file=sys.stderr, flush=True)
    return True


def pin_sweep_dir(config: DictConfig) -> str:
    """Resolve hydra.sweep.dir once for the whole sweep and pin it, as `hydra.sweep.dir=` would; return it.

    It holds run_name, which reads ${hydra:runtime.choices.model}: Hydra sets that per job only, so the
    sweeper could not resolve it, and each job would name its own directory after its own choices. A
    swept group (model=kgram,lstm) is named by its values, not by the default the sweep's config holds.
    """
    from omegaconf import read_write

    from interp.cli import hydra_quote

    choices, swept = config.hydra.runtime.choices, swept_groups(config)
    with read_write(config.hydra):
        before = {group: choices[group] for group in swept}
        choices.update(swept)
    HydraConfig.instance().set_config(config)   # (a copy, for ${hydra:...}; it makes config.hydra read-only)
    sweep_dir = str(config.hydra.sweep.dir)
    with read_write(config.hydra):
        choices.update(before)
        config.hydra.sweep.dir = sweep_dir
        config.hydra.overrides.hydra.append(f"hydra.sweep.dir={hydra_quote(sweep_dir)}")
    return sweep_dir


def swept_groups(config: DictConfig) -> dict[str, str]:
    """{group: "a,b"} for each config group the command sweeps over by listing its options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = {}
    for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        group = override.key_or_group
        if group in config.hydra.runtime.choices and override.is_sweep_override() and override.is_discrete_sweep():
            try:
                out[group] = ",".join(override.sweep_string_iterator())
            except Exception:   # glob(...) lists its options only against the config repository
                continue
    return out


class SweepSummary(Callback):
    sweep_dir: str | None = None   # of the sweep this process runs (read by no_trial_finished)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        SweepSummary.sweep_dir = pin_sweep_dir(config)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        text, ok = summary(config.hydra.sweep.dir)
        print(text, file=sys.stdout if ok else sys.stderr, flush=True)
        if not ok:
            sys.exit(1)
