"""One training run: compose -> check -> data -> task -> Lightning fit -> run contract.

train.py is only the Hydra entry point; this module does the work so tests
and notebooks can call it too.
"""

import logging
import sys
from pathlib import Path
from urllib.parse import urlencode

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from interp import phases
from interp.callbacks import Throughput
from interp.callbacks.interruption import EXIT_CODE, SaveOnInterrupt
from interp.callbacks.checkpoint_io import AtomicCheckpointIO
from interp.errors import ConfigError, DiskFull, Interrupted
from interp.objectives import derived_metrics
from interp.provenance import versions
from interp.registry import task_kind
from interp.resume import resume_config
from interp.run_dir import (
    FIGURES_DIR,
    STATUS_DONE,
    failure,
    is_wandb_logger,
    wandb_logger,
    write_config,
    write_failure,
    write_metrics,
)

log = logging.getLogger(__name__)


def run_meta(hydra_cfg) -> dict:
    """What reproduces this run: its command-line overrides and the group choices (the code and
    package versions are added by train())."""
    return {"overrides": list(hydra_cfg.overrides.task),
            "choices": {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")}}


def build_loggers(cfg: DictConfig, hydra_cfg) -> list:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        kwargs = {}
        if is_wandb_logger(spec):
            group = spec.get("group")
            if group is None and hydra_cfg.mode == RunMode.MULTIRUN:
                group = Path(hydra_cfg.sweep.dir).name   # every job of a sweep in one W&B group
            choices = hydra_cfg.runtime.choices
            tags = list(spec.get("tags") or []) + [f"model={choices.get('model')}", f"data={choices.get('data')}"]
            kwargs = {"group": group, "tags": tags}
        loggers.append(hydra.utils.instantiate(spec, **kwargs))
    return loggers


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[pl.Callback]:
    callbacks = []
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None or (name == "lr_monitor" and not has_logger):
            continue  # LearningRateMonitor refuses to run without a logger
        callbacks.append(hydra.utils.instantiate(spec))
    return callbacks


class LastValidation(pl.Callback):
    """The global step of the last full validation during fit (None before any)."""

    step: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def _has_test_split(dm: pl.LightningDataModule) -> bool:
    return getattr(dm, "test_ds", None) is not None  # datasets without one fall back to val: skip


def train(cfg: DictConfig) -> dict:
    """Train per `cfg` in the current Hydra run directory; return the final metrics.

    A run that raises still leaves metrics.json, with "status": "failed", the error and the metrics
    known by then, and says so in W&B (a sweep reads both; see interp.sweep)."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    state: dict = {}
    try:
        return _train(cfg, state)
    except Exception as e:
        if rank_zero_only.rank == 0:
            record_failure(cfg, e, state.get("trainer"))
        raise
    except SystemExit:   # how Lightning ends a run stopped by SIGTERM or Ctrl-C (SaveOnInterrupt saw which)
        stop = state.get("interrupt")
        if stop is None or stop.signal is None:
            raise
        if rank_zero_only.rank == 0:
            record_failure(cfg, Interrupted(stop.reason()), state.get("trainer"))
            print(f"error: {stop.reason()}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CODE[stop.signal]) from None


def record_failure(cfg: DictConfig, error: Exception, trainer: pl.Trainer | None) -> None:
    import wandb

    known = {}
    if trainer is not None:
        known = {k: v.item() for k, v in trainer.callback_metrics.items() if v.numel() == 1 and not k.startswith("lr-")}
        known["trainer/global_step"] = trainer.global_step
    try:
        write_failure(cfg.paths.output_dir, error, known)
    except DiskFull as e:   # the disk that stopped the run may have no room for metrics.json either
        log.warning("the failure is not recorded in metrics.json: %s", e)
    hydra_cfg = HydraConfig.get()
    if wandb.run is None and hydra_cfg.mode == RunMode.MULTIRUN and wandb_logger(cfg) is not None:
        try:   # a sweep job that failed before its logger started: start its run, so the group shows the failure
            for lg in build_loggers(cfg, hydra_cfg):
                getattr(lg, "experiment", None)
        except Exception:   # the run directory already records the failure
            log.warning("could not start a W&B run to record the failure", exc_info=True)
    if wandb.run is not None:
        wandb.run.summary.update(failure(error))


def optimized_value(cfg: DictConfig, metrics: dict) -> float | None:
    """The final metric a sweeper optimises (`optimized_metric`), or None when none is set."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if not isinstance(metrics.get(name), (int, float)):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
        raise ConfigError(f"optimized_metric={name} is not a final metric of this run (it has: {', '.join(numeric)}). "
                          "Fix: set optimized_metric to one of them.")
    return float(metrics[name])


def _train(cfg: DictConfig, state: dict) -> dict:
    hydra_cfg = HydraConfig.get()
    cfg, meta = resume_config(cfg) if cfg.ckpt_path else (cfg, run_meta(hydra_cfg))
    meta = {**meta, "versions": versions()}
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)   # parallel jobs on one machine: cores // jobs each
    meta["threads"] = torch.get_num_threads()
    pl.seed_everything(cfg.seed, workers=True)
    phases.reset()   # a multirun's jobs share the process
    cfg, dm, task = task_kind(cfg.task.name).build(cfg, meta)

    loggers = build_loggers(cfg, hydra_cfg)
    throughput, last_val, state["interrupt"] = Throughput(), LastValidation(), SaveOnInterrupt()
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=loggers or False, plugins=[*(cfg.trainer.get("plugins") or []), AtomicCheckpointIO()],
        callbacks=[*build_callbacks(cfg, bool(loggers)), throughput, last_val, state["interrupt"]])
    state["trainer"] = trainer
    if trainer.is_global_zero:
        write_config(run_dir, cfg, meta)
        (run_dir / FIGURES_DIR).mkdir(exist_ok=True)
        for lg in loggers:
            lg.log_hyperparams(task.config)

    trainer.fit(task, datamodule=dm, ckpt_path=cfg.ckpt_path)
    # Learning-rate monitor values are curves, not results: W&B has them.
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if not k.startswith("lr-")}
    if cfg.final_eval:
        if last_val.step != trainer.global_step:   # else the last validation already saw these weights
            metrics.update(trainer.validate(task, datamodule=dm, verbose=False)[0])
        if _has_test_split(dm):
            metrics.update(trainer.test(task, datamodule=dm, verbose=False)[0])
    metrics.update(throughput.summary(trainer.world_size))
    metrics.update(phases.summary())
    metrics.update({f"data/{k}": v for k, v in getattr(dm, "summary", {}).items() if isinstance(v, (int, float))})
    for cb in trainer.callbacks:
        if isinstance(getattr(cb, "results", None), dict):  # analyses that ran at the end of training
            metrics.update(cb.results)
    metrics["trainer/global_step"] = trainer.global_step
    metrics.update(task.outcome())
    metrics.update(derived_metrics(cfg, metrics))
    optimized_value(cfg, metrics)   # a misnamed objective fails this job, not the sweeper later
    final = {f"final/{k}": v for k, v in metrics.items()}
    for lg in loggers:
        lg.log_metrics(final, step=trainer.global_step)
        if type(lg).__name__ == "TensorBoardLogger":   # its HParams view compares runs by these
            lg.log_hyperparams(task.config, metrics=final)
    metrics["status"] = STATUS_DONE
    if trainer.is_global_zero:
        import wandb

        if wandb.run is not None:
            wandb.run.summary["status"] = STATUS_DONE
        write_metrics(run_dir, metrics)
        wandb.finish()   # its closing printout first, so the run's last lines say where things are
        print_summary(run_dir, metrics)
    return metrics


def print_summary(run_dir: Path, metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"final metrics ({run_dir / 'metrics.json'})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(table)
    console.print(f"run directory: [bold]{run_dir}[/bold]")
    figures = sorted(p.name for p in (run_dir / FIGURES_DIR).glob("*") if p.is_dir())
    if figures:
        console.print(f"figures: {run_dir / FIGURES_DIR}/ ({', '.join(figures)})", soft_wrap=True)
    # The explorer's URL for this run (interp.explorer; its default port). Prints, does not import it.
    console.print(f"explore it: python analyze.py serve, then open "
                  f"http://127.0.0.1:8050/run?{urlencode({'path': str(run_dir)})}", soft_wrap=True)
