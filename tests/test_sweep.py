"""Sweeps: a failing job is recorded and the others go on; every figure reaches W&B; Optuna search,
parallel (joblib) and submitit_local launchers; `train.py --reproduce`; their bad input."""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import FAST, FAST_BY_DATA

from interp.errors import RunDirError
from interp.objectives import ce_recovered_at_l0
from interp.reproduce import (
    check_target,
    config_differences,
    metric_differences,
    report,
    split_argv,
)
from interp.run_dir import write_metrics
from interp.runs import read_metrics
from interp.runs.wandb_offline import history, offline_runs, run_info, summary
from interp.sweep import summary as sweep_summary

TINY = ["model=transformer_0l", *FAST, "logger=none"]


def params_of(run: Path) -> float:
    return yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"]


def one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and ". Fix: " in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --- no training ---------------------------------------------------------------------------------------

def test_ce_recovered_at_l0_known_answers():
    assert ce_recovered_at_l0(0.9, 16, 32) == 0.9            # sparser than the target: CE recovered only
    assert ce_recovered_at_l0(0.9, 32 * math.e, 32) == pytest.approx(-0.1)   # one e-fold too dense costs 1.0
    assert ce_recovered_at_l0(0.5, 0, 32) == 0.5


def test_sweep_summary_counts_done_failed_and_killed_jobs(tmp_path):
    for job in ("0", "1", "2", "10"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
    write_metrics(tmp_path / "0", {"val/loss": 1.0, "status": "done"})
    write_metrics(tmp_path / "1", {"status": "failed", "error": "boom. Fix: x", "error_type": "ConfigError"})
    write_metrics(tmp_path / "10", {"val/loss": 2.0, "status": "done"})
    text, ok = sweep_summary(tmp_path)
    assert not ok
    assert text.splitlines() == [f"sweep {tmp_path}: 2 done, 2 failed", "  failed 1: ConfigError: boom. Fix: x",
                                 "  failed 2: no metrics.json: the job was killed (out of memory?) or is still running"]


def test_metric_differences_leave_out_timings_and_respect_the_tolerance():
    old = {"val/loss": 1.0, "time/train_step_s": 3.0, "throughput/tokens_per_s": 9.0, "status": "done"}
    assert metric_differences(old, {**old, "val/loss": 1.0 + 5e-7, "time/train_step_s": 4.0}) == ([], 1)
    diff, n = metric_differences(old, {**old, "val/loss": 1.1})
    assert n == 1 and diff[0].startswith("val/loss: 1.0 -> 1.1")


def test_config_differences_leave_out_where_the_runs_and_caches_are():
    def config(out, cache, lr):
        return {"paths": {"output_dir": out, "cache_dir": cache}, "data": {"cache_dir": cache},
                "logger": {"wandb": {"save_dir": out}}, "optim": {"lr": lr}, "run_meta": {"overrides": [out]}}

    assert config_differences(config("/o/a", "/c1", 1e-3), config("/o/b", "/c2", 1e-3)) == []
    assert config_differences(config("/o/a", "/c1", 1e-3), config("/o/b", "/c1", 2e-3)) == ["optim.lr: 0.001 -> 0.002"]


def test_an_override_key_that_does_not_exist(run_train, tmp_path):
    proc = run_train("optim.nosuch=1", run_dir=tmp_path / "r", expect_ok=False)
    one_line_error(proc, "optim.nosuch", "+optim.nosuch=1")


def test_an_optuna_search_space_over_a_key_that_does_not_exist(run_train, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = run_train("hparams_search=lm_optuna", "optim.nosuch=interval(0, 1)", *TINY, run_dir=tmp_path / "s",
                     multirun=True, expect_ok=False)
    one_line_error(proc, "optim.nosuch")
    assert not list((tmp_path / "s").glob("*/metrics.json"))


def test_reproduce_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not an interp run directory.*Fix: "):
        check_target(tmp_path)
    with pytest.raises(RunDirError, match="needs a run directory.*Fix: "):
        split_argv(["train.py", "--reproduce"])


# --- end to end ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failing_job_is_recorded_the_sweep_goes_on_and_figures_reach_wandb(run_train, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train("experiment=induction_2l", *FAST_BY_DATA["induction"], "~callbacks.composition",
                     "~callbacks.patching", "~callbacks.attention_grid", "callbacks.induction.every_n_steps=3",
                     "callbacks.induction.n_batch=4", "optim.lr=1e12,5e-3", "optim.warmup_steps=0",
                     "trainer.gradient_clip_val=null", run_dir=sweep, multirun=True, expect_ok=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"sweep {sweep}: 1 done, 1 failed" in proc.stderr
    assert "failed 0: TrainingDiverged: loss became nan" in proc.stderr

    failed, done = read_metrics(sweep / "0"), read_metrics(sweep / "1")
    assert failed["status"] == "failed" and failed["error_type"] == "TrainingDiverged"
    assert "\n" not in failed["error"] and "Fix:" in failed["error"] and 0 < failed["trainer/global_step"] < 6
    assert done["status"] == "done" and math.isfinite(done["val/loss"])
    runs = [offline_runs(sweep / job)[0] for job in ("0", "1")]
    assert run_info(runs[0])["group"] == run_info(runs[1])["group"] == sweep.name
    assert summary(runs[0])["status"] == "failed" and summary(runs[0])["_exit_code"] == 1
    assert summary(runs[0])["error_type"] == "TrainingDiverged"
    assert summary(runs[1])["status"] == "done" and summary(runs[1])["_exit_code"] == 0

    # Figures keyed by analysis and step: the induction analysis at steps 3 and 6, HTML at the end.
    logged: dict[int, dict] = {}
    for row in history(runs[1]):
        for key, value in row.items():
            if key.startswith("figures/"):
                logged.setdefault(row["trainer/global_step"], {})[key] = value
    figures = sweep / "1" / "figures"
    pngs = {f"figures/induction/{p.stem}" for p in (figures / "induction").glob("*.png")}
    assert pngs and set(logged) == {3, 6}
    assert set(logged[3]) == pngs | {"figures/induction/results"}
    assert set(logged[6]) == pngs | {"figures/induction/results", "figures/attention_html/attention"}
    assert {logged[6][k]["_type"] for k in pngs} == {"image-file"}
    assert logged[6]["figures/attention_html/attention"]["_type"] == "html-file"
    media = runs[1].parent / "files"
    html = (media / logged[6]["figures/attention_html/attention"]["path"]).read_text()
    assert html == (figures / "attention_html" / "attention.html").read_text()
    table = json.loads((media / logged[6]["figures/induction/results"]["path"]).read_text())
    results = json.loads((figures / "induction" / "results.json").read_text())   # the last (step 6) run's
    assert table["columns"] == ["metric", "value"]
    assert {k: v for k, v in table["data"]} == pytest.approx(results)


@pytest.mark.slow
def test_optuna_search_on_parallel_jobs_then_reproduce_a_trial(run_train, train_env, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    search = tmp_path / "search"
    all_cores = {k: v for k, v in train_env.items() if k not in ("INTERP_THREADS", "OMP_NUM_THREADS")}
    run_train("hparams_search=lm_optuna", "hydra/launcher=parallel", "hydra.sweeper.n_trials=3",
              "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.n_startup_trials=2", *TINY, run_dir=search,
              multirun=True, env=all_cores)   # the launcher, not the tests' environment, sets the threads
    losses = {}
    for trial in ("0", "1", "2"):
        metrics = read_metrics(search / trial)
        assert metrics["status"] == "done"
        config = yaml.safe_load((search / trial / "config.yaml").read_text())
        assert config["run_meta"]["threads"] == 1   # 2 parallel jobs on 2 cores: one torch thread each
        losses[config["optim"]["lr"], config["optim"]["weight_decay"], config["optim"]["warmup_steps"]] = \
            metrics["val/loss"]
    best = yaml.safe_load((search / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(losses.values()))
    params = best["best_params"]
    assert losses[params["optim.lr"], params["optim.weight_decay"], params["optim.warmup_steps"]] == \
        pytest.approx(best["best_value"])
    assert len(set(losses)) == 3

    # The best... any trial reruns to the same metrics, with the same torch thread count.
    again = tmp_path / "again"
    proc = run_train("--reproduce", str(search / "0"), run_dir=again)
    assert f"reproduced: {again} against {search / '0'}" in proc.stdout
    assert read_metrics(again)["val/loss"] == pytest.approx(read_metrics(search / "0")["val/loss"], abs=1e-6)
    versions = yaml.safe_load((again / "config.yaml").read_text())["run_meta"]["versions"]
    assert versions["packages"]["torch"] and versions["code"]["interp"]

    # An altered stored config, or metrics that moved, are reported (the report's own function, no rerun).
    stored = yaml.safe_load((search / "0" / "config.yaml").read_text())
    stored["optim"]["lr"] = 0.02
    text, ok = report(search / "0", stored, again)
    assert not ok and "NOT reproduced" in text and f"optim.lr: 0.02 -> {params_of(search / '0')}" in text
    write_metrics(search / "0", {**read_metrics(search / "0"), "val/loss": 1.5})
    text, ok = report(search / "0", yaml.safe_load((search / "0" / "config.yaml").read_text()), again)
    assert not ok and "config differs" not in text
    assert f"val/loss: 1.5 -> {read_metrics(again)['val/loss']}" in text and "metrics differ beyond 1e-06" in text

    # A run whose checkpoint is gone cannot be reproduced.
    gone = tmp_path / "gone"
    shutil.copytree(search / "2", gone)
    for ckpt in (gone / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    proc = run_train("--reproduce", str(gone), run_dir=tmp_path / "r", expect_ok=False)
    one_line_error(proc, "last.ckpt", "does not exist")


@pytest.mark.slow
def test_a_search_whose_every_trial_fails_ends_with_the_summary(run_train, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    search = tmp_path / "search"
    proc = run_train("hparams_search=lm_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                     "model=transformer_1l", "data=induction", *FAST_BY_DATA["induction"], "logger=none",
                     "optim.lr=1e12", "optim.warmup_steps=0", "trainer.gradient_clip_val=null", run_dir=search,
                     multirun=True, expect_ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"sweep {search}: 0 done, 2 failed" in proc.stderr and "failed 1: TrainingDiverged" in proc.stderr
    assert "error: no trial finished, so the search has no best parameters" in proc.stderr
    assert not (search / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_submitit_local_two_jobs(run_train, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = run_train("hydra/launcher=submitit_local", "+hydra.job.env_set.INTERP_THREADS=1",
                     "hydra.launcher.timeout_min=10", "seed=0,1", *TINY, run_dir=sweep, multirun=True)
    assert f"sweep {sweep}: 2 done, 0 failed" in proc.stdout
    metrics = [read_metrics(sweep / job) for job in ("0", "1")]
    assert all(m["status"] == "done" for m in metrics) and metrics[0]["val/loss"] != metrics[1]["val/loss"]
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2   # one submitit process per job
    assert Path(sweep / "0" / "config.yaml").is_file()
