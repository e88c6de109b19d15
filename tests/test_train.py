"""End-to-end: every preset trains through train.py and leaves the run contract."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAST, FAST_BY_DATA, REPO

from interp.runs import load_run, read_metrics
from interp.runs.wandb_offline import offline_runs, run_info

pytestmark = pytest.mark.slow

PRESETS = {  # experiment -> its data
    "qa_transformer": "qa", "qa_lstm": "qa", "qa_kgram": "qa", "bigram_0l": "code",
    "attn_1l": "code", "induction_2l": "induction", "arithmetic_mlp": "arithmetic",
}


def assert_run_contract(run_dir: Path, steps: int) -> dict:
    for path in [".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "config.yaml",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "metrics.json"]:
        assert (run_dir / path).is_file(), f"missing {path}"
    assert (run_dir / "figures").is_dir()
    resolved = (run_dir / "config.yaml").read_text()
    assert "${" not in resolved, "config.yaml must be fully resolved"
    metrics = read_metrics(run_dir)
    assert metrics["trainer/global_step"] == steps
    assert math.isfinite(metrics["val/loss"])
    runs = offline_runs(run_dir)
    assert len(runs) == 1, runs
    assert run_info(runs[0])["job_type"] == "train"
    return metrics


@pytest.mark.parametrize("experiment", sorted(PRESETS))
def test_every_preset_trains_and_leaves_the_run_contract(experiment, run_train, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(f"experiment={experiment}", *FAST_BY_DATA[PRESETS[experiment]], run_dir=run_dir)
    assert "run directory:" in proc.stdout and str(run_dir) in proc.stdout
    metrics = assert_run_contract(run_dir, steps=6)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["run_name"] == experiment
    ckpt_config = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu",
                             weights_only=False)["hyper_parameters"]["config"]
    assert config == ckpt_config   # config.yaml carries the run_meta the checkpoint holds
    assert config["run_meta"]["choices"]["experiment"] == experiment
    assert f"experiment={experiment}" in config["run_meta"]["overrides"]

    loaded = load_run(run_dir)
    assert loaded.global_step == 6 and not loaded.model.training
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, ckpt["state_dict"][f"model.{name}"]), name
    if PRESETS[experiment] == "qa":
        assert 0.0 <= metrics["val/answer_exact_match/heldout_templates"] <= 1.0
        assert "val/answer_exact_match/train_templates" in metrics
    if PRESETS[experiment] == "arithmetic":
        assert {"test/mse", "test/acc", "val/mse", "val/acc"} <= set(metrics)
    else:
        assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)
        assert loaded.tokenizer.vocab_size == config["data"]["vocab_size"]


def test_tiny_overfit_loss_falls(run_train, tmp_path):
    text = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n" * 40
    for i in range(3):
        (tmp_path / f"f{i}.py").write_text(text)
    run_dir = tmp_path / "run"
    run_train("model=transformer_1l", "data=text_files", f"data.paths=[{tmp_path}/*.py]", "data.val_every=3",
              "data.seq_len=32", "data.batch_size=8", "trainer.max_steps=60", "trainer.val_check_interval=30",
              "optim.lr=3e-3", "optim.warmup_steps=5", "logger=csv", run_dir=run_dir)
    metrics = read_metrics(run_dir)
    # ln(8192) = 9.0 at initialisation; a 32-token repeated snippet is memorised quickly.
    assert metrics["val/loss"] < 1.0, metrics


def test_rerun_from_saved_overrides_reproduces_val_loss(run_train, tmp_path):
    first = tmp_path / "first"
    run_train("model=transformer_1l", *FAST, "seed=3", "logger=none", run_dir=first)
    overrides = yaml.safe_load((first / ".hydra/overrides.yaml").read_text())
    second = tmp_path / "second"
    run_train(*overrides, run_dir=second)
    a, b = read_metrics(first), read_metrics(second)
    assert abs(a["val/loss"] - b["val/loss"]) <= 1e-6
    assert a["train/loss"] == pytest.approx(b["train/loss"], abs=1e-6)


def test_resume_after_sigkill_finishes_at_the_same_step(train_env, run_train, tmp_path):
    killed = tmp_path / "killed"
    args = [sys.executable, str(REPO / "train.py"), "model=transformer_1l", "data.max_files=24",
            "data.batch_size=4", "model.d_model=32", "model.n_heads=2", "model.d_head=16",
            "trainer.max_steps=100", "trainer.val_check_interval=20",
            "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "logger=csv",
            f"hydra.run.dir={killed}"]
    proc = subprocess.Popen(args, cwd=REPO, env=train_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the checkpoint write finish (Lightning writes it atomically, then moves on)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step_at_kill < 100, "the run must be killed mid-training for this test to mean anything"
    assert not (killed / "metrics.json").exists()

    resumed = tmp_path / "resumed"
    run_train(f"ckpt_path={last}", run_dir=resumed)
    metrics = read_metrics(resumed)
    assert metrics["trainer/global_step"] == 100
    config = yaml.safe_load((resumed / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == 100 and config["model"]["d_model"] == 32  # the killed run's config
    meta = torch.load(resumed / "checkpoints/last.ckpt", map_location="cpu",
                      weights_only=False)["hyper_parameters"]["config"]["run_meta"]
    assert "trainer.max_steps=100" in meta["overrides"] and meta["resumed_from"] == str(last)


def test_sigterm_saves_the_step_records_the_interruption_and_resumes(train_env, run_train, tmp_path):
    """A scheduler's pre-emption or `kill`: last.ckpt at the step it stopped, metrics.json says so, exit 143."""
    stopped = tmp_path / "stopped"
    args = [sys.executable, str(REPO / "train.py"), "model=transformer_1l", "data=induction", "data.num_train=512",
            "data.num_val=16", "data.batch_size=4", "trainer.max_steps=100000", "trainer.val_check_interval=20",
            "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "logger=csv",
            "~callbacks.default_attention_grid", "~callbacks.default_induction", "~callbacks.default_ngram",
            f"hydra.run.dir={stopped}"]
    proc = subprocess.Popen(args, cwd=REPO, env=train_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    last = stopped / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:   # fit has begun: handlers are set
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    metrics = read_metrics(stopped)
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert metrics["status"] == "failed" and metrics["error_type"] == "Interrupted"
    assert metrics["trainer/global_step"] == step > 20   # saved where it stopped, not at the last validation
    assert f"stopped by SIGTERM at step {step}; {last} holds that step" in stderr
    assert f"Fix: resume with python train.py ckpt_path={last}" in metrics["error"]

    resumed = tmp_path / "resumed"
    run_train(f"ckpt_path={last}", f"trainer.max_steps={step + 5}", run_dir=resumed)
    assert read_metrics(resumed)["trainer/global_step"] == step + 5


def test_ddp_cpu_two_processes_one_run(run_train, tmp_path):
    run_dir = tmp_path / "ddp"
    run_train("trainer=ddp_cpu", "model=transformer_1l", *FAST, "trainer.max_steps=20",
              "trainer.val_check_interval=10", "optim.lr=3e-3", run_dir=run_dir)
    metrics = assert_run_contract(run_dir, steps=20)
    assert metrics["val/loss"] < math.log(8192) - 1.0  # it learned, not just ran
    assert not list(tmp_path.glob("*/*/metrics.json")), "rank 1 must not create a run dir of its own"


def test_multirun_two_jobs_share_one_wandb_group(run_train, tmp_path):
    sweep = tmp_path / "sweep"
    run_train("seed=0,1", "model=transformer_0l", *FAST, run_dir=sweep, multirun=True)
    infos = []
    for job in ("0", "1"):
        assert_run_contract(sweep / job, steps=6)
        infos.append(run_info(offline_runs(sweep / job)[0]))
    assert infos[0]["group"] == infos[1]["group"] == sweep.name
    assert infos[0]["id"] != infos[1]["id"]
    seeds = [yaml.safe_load((sweep / j / "config.yaml").read_text())["seed"] for j in ("0", "1")]
    assert seeds == [0, 1]
    assert json.loads((sweep / "0" / "metrics.json").read_text()) != json.loads((sweep / "1" / "metrics.json").read_text())
