"""Bad input: a clear message (what is wrong, how to fix it), non-zero exit, nothing lost."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, REPO

from interp.errors import ConfigError, RunDirError
from interp.runs import load_run, read_metrics

pytestmark = pytest.mark.slow


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def assert_refused(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_model_and_data_of_different_kinds(run_train, tmp_path):
    proc = run_train("model=arithmetic_mlp", "data=code", run_dir=tmp_path / "r", expect_ok=False)
    assert_refused(proc, "arithmetic_mlp", "data=arithmetic", "Fix")


def test_context_longer_than_the_model(run_train, tmp_path):
    proc = run_train("model=transformer_1l", "model.n_ctx=64", run_dir=tmp_path / "r", expect_ok=False)
    assert_refused(proc, "data.seq_len=256", "model.n_ctx=64")


def test_hf_dataset_unreachable(run_train, tmp_path):
    proc = run_train("data=hf", "data.path=interp-tests/no-such-dataset", run_dir=tmp_path / "r", expect_ok=False)
    assert_refused(proc, "interp-tests/no-such-dataset")


def test_nan_loss_stops_and_names_the_step(run_train, tmp_path):
    proc = run_train("model=transformer_1l", *FAST, "logger=none", "optim.lr=1e12", "optim.warmup_steps=0",
                     "trainer.gradient_clip_val=null", run_dir=tmp_path / "r", expect_ok=False)
    message = assert_refused(proc, "loss became", "at step")
    assert "nan" in message or "inf" in message
    metrics = read_metrics(tmp_path / "r")   # the run records how it ended (interp.sweep reads it)
    assert metrics["status"] == "failed" and metrics["error_type"] == "TrainingDiverged"
    assert metrics["error"] == message.removeprefix("error: ") and metrics["trainer/global_step"] < 6


def test_missing_checkpoint(run_train, tmp_path):
    proc = run_train(f"ckpt_path={tmp_path}/nope/last.ckpt", run_dir=tmp_path / "r", expect_ok=False)
    assert_refused(proc, "does not exist", "last.ckpt")


def test_checkpoint_of_another_architecture_names_both_and_touches_nothing(run_train, tmp_path):
    first = tmp_path / "first"
    run_train("model=transformer_1l", *FAST, "logger=none", run_dir=first)
    before = tree_digest(first)
    proc = run_train("model=lstm", f"ckpt_path={first}/checkpoints/last.ckpt", run_dir=tmp_path / "second",
                     expect_ok=False)
    assert_refused(proc, "model=transformer_1l", "model=lstm")
    # Same group but another size: refused too, naming the differing field.
    proc = run_train("model.d_model=64", f"ckpt_path={first}/checkpoints/last.ckpt", run_dir=tmp_path / "third",
                     expect_ok=False)
    assert_refused(proc, "d_model", "(128, 64)")
    assert tree_digest(first) == before


def test_a_foreign_file_as_checkpoint(run_train, tmp_path):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    proc = run_train(f"ckpt_path={bogus}", run_dir=tmp_path / "r", expect_ok=False)
    assert_refused(proc, "bogus.ckpt", "not a readable PyTorch checkpoint")


def test_load_run_on_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not an interp run directory"):
        load_run(tmp_path)
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "missing")


# --- bad values: one table, one schema (interp/config_schema.py) -----------------------------------------

def garbage_run(root: Path) -> Path:
    """A run directory whose config.yaml is not YAML (hand-edited, cut short), beside a checkpoint."""
    run = root / "garbage"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"checkpoint")
    (run / "config.yaml").write_text(": : not yaml [\n")
    return run


def cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


# (script, its arguments ({tmp}: this test's folder, {run}: the run dir it must leave untouched),
#  substrings of the one error line). Every case exits 2 before any data loading or model building.
BAD = {
    "max_steps not a number": ("train.py", ["trainer.max_steps=abc"], ["trainer.max_steps=abc", "not an integer"]),
    "max_steps below -1": ("train.py", ["trainer.max_steps=-5"],
                           ["trainer.max_steps=-5", "out of range", "-1 (no step"]),
    "max_steps -1 with no epoch limit": ("train.py", ["trainer.max_steps=-1"],
                                         ["trainer.max_steps=-1", "never stops", "trainer.max_epochs="]),
    "d_model negative": ("train.py", ["model.d_model=-4"], ["model.d_model=-4", "positive integer"]),
    "d_model not an integer": ("train.py", ["model.d_model=64.5"], ["model.d_model=64.5", "not an integer"]),
    "d_head null": ("train.py", ["model.d_head=null"], ["model.d_head=null", "needs a value"]),
    "lr negative": ("train.py", ["optim.lr=-1"], ["optim.lr=-1", "positive number"]),
    "sae k above d_sae": ("train.py", ["task=sae", "sae=topk", "sae.k=5000", "sae.d_sae=1024", "base_run={tmp}/base",
                                       "sae.hook=blocks.0.hook_resid_post"],
                          ["sae.k=5000", "1024 features", "sae.k=<at most 1024>"]),
    "unknown sae.init recipe": ("train.py", ["task=sae", "sae=topk", "sae.init=sparsify", "base_run={tmp}/base",
                                             "sae.hook=blocks.0.hook_resid_post"],
                                ["sae.init=sparsify", "interp", "saelens"]),
    "gpu without cuda": ("train.py", ["trainer=gpu"], ["trainer.accelerator=gpu", "no CUDA device", "trainer=cpu"]),
    "analysis option not an integer": ("analyze.py", ["run={run}", "analysis=topk_next", "k=abc"],
                                       ["topk_next", "k=abc", "not an integer"]),
    "reproduce a garbage config.yaml": ("train.py", ["--reproduce", "{garbage}", "hydra.run.dir={run}"],
                                        ["garbage/config.yaml", "not valid YAML"]),
    "pretrained model with no data=": ("analyze.py", ["model=gpt2", "data.vocab_size=50257", "out_dir={run}"],
                                       ["data.vocab_size=50257", "no data= is chosen", "data=<name>", "code"]),
    "index of a missing root": ("analyze.py", ["index", "--root", "{tmp}/missing", "--out", "{run}/index.html"],
                                ["--root", "/missing", "does not exist"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_value_is_one_line_exit_2_and_writes_nothing(case, train_env, tmp_path):
    script, args, needles = BAD[case]
    if case == "gpu without cuda" and cuda_visible():
        pytest.skip("a CUDA device is visible here")
    run = tmp_path / "run"
    places = {"tmp": tmp_path, "run": run, "garbage": garbage_run(tmp_path)}
    args = [a.format(**places) for a in args]
    if script == "train.py" and "--reproduce" not in args:
        args += [*FAST, "logger=none", f"hydra.run.dir={run}"]
    garbage_before = tree_digest(places["garbage"])
    proc = subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, env=train_env, capture_output=True,
                          text=True, timeout=300)
    assert_refused(proc, *needles, "Fix:")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [proc.stderr.strip().splitlines()[-1]]   # one line, the last
    written = sorted(str(p.relative_to(run)) for p in run.rglob("*")) if run.exists() else []
    assert not [p for p in written if not p.startswith((".hydra", "train.log"))], written   # Hydra's own files only
    assert tree_digest(places["garbage"]) == garbage_before


def test_every_preset_and_entry_config_passes_the_schema():
    """The schema refuses bad values, not the shipped configs (the GPU ones need a GPU: left out)."""
    from hydra import compose, initialize_config_dir

    from interp.config_schema import check_config

    presets = [[f"experiment={p.stem}"] for p in sorted((REPO / "conf" / "experiment").glob("*.yaml"))]
    groups = [["trainer=ddp_cpu"], ["model=gpt2"], ["hparams_search=lm_optuna"],
              *[["task=sae", f"sae={a}"] for a in ("standard", "topk", "batchtopk", "jumprelu", "gated")]]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        for overrides in presets + groups:
            check_config(compose("train", overrides))
        check_config(compose("analyze", ["model=gpt2", "data=code", "sae=pretrained"]))


def test_an_sae_k_above_the_width_read_from_the_hook_names_the_values():
    """With d_sae derived (expansion x the hook's width) the check runs once the width is known."""
    from interp.sae.spec import build_training_sae

    spec = {"architecture": "topk", "k": 5000, "expansion": 8, "hook": "blocks.0.hook_resid_post"}
    with pytest.raises(ConfigError) as error:
        build_training_sae(spec, d_in=128, hook="blocks.0.hook_resid_post")
    message = str(error.value)
    for needle in ("sae.k=5000", "1024 features", "sae.expansion=8 x d_in 128", "blocks.0.hook_resid_post",
                   "Fix: sae.k=<at most 1024>", "sae.expansion=40"):
        assert needle in message, (needle, message)
    assert build_training_sae({**spec, "k": 1024}, d_in=128).cfg.d_sae == 1024   # the bound itself is fine


def test_multirun_flag_after_the_overrides_is_a_sweep_and_its_bad_jobs_are_recorded(train_env, tmp_path):
    """`-m` anywhere (argparse took no override after it); the sweep's default directory, named after run_name
    with the swept models, holds every job; a job with a bad value fails alone with its metrics.json, as the
    sweep contract says."""
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "model=kgram,lstm", "-m", "trainer.max_steps=abc",
                           "logger=none"], cwd=tmp_path, env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    sweeps = list((tmp_path / "multirun").glob("*/*"))
    assert [s.name.split("_", 1)[1] for s in sweeps] == ["kgram,lstm-code"], sweeps
    assert f"sweep {sweeps[0].relative_to(tmp_path)}: 0 done, 2 failed" in proc.stderr
    for job in "01":
        metrics = read_metrics(sweeps[0] / job)
        assert metrics["status"] == "failed" and "trainer.max_steps=abc" in metrics["error"]
        assert not (sweeps[0] / job / "checkpoints").exists()


def test_compare_lists_a_half_written_run_as_incomplete_and_its_blanks_differ_from_nothing(tmp_path, capsys):
    from interp.compare import main

    def run(name: str, config: str | None, metrics: dict | None = None, hydra: str | None = None) -> None:
        path = tmp_path / name
        (path / ".hydra").mkdir(parents=True)
        if config is not None:
            (path / "config.yaml").write_text(config)
        if metrics is not None:
            (path / "metrics.json").write_text(json.dumps(metrics))
        hydra = hydra or "task: {name: lm}\nmodel:\n  d_vocab: ${data.vocab_size}\n"   # Hydra's copy: unresolved
        (path / ".hydra" / "config.yaml").write_text(hydra)
        (path / ".hydra" / "overrides.yaml").write_text("[]\n")

    whole = "task: {name: lm}\nmodel: {d_vocab: 8192, n_ctx: 256}\nseed: %d\nrun_meta: {overrides: [seed=%d]}\n"
    run("0", whole % (0, 0), {"status": "done", "val/loss": 2.0})
    run("1", whole % (1, 1), {"status": "done", "val/loss": 2.5})
    run("2", "task: {name: lm}\nmodel: {d_voc")           # config.yaml cut short, no metrics.json
    run("3", None, hydra=": not yaml [")                   # nothing readable at all
    main([str(tmp_path), f"out={tmp_path / 'cmp'}", "wandb=false"])
    printed = capsys.readouterr().out
    with open(tmp_path / "cmp" / "table.csv", newline="") as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    assert set(table) == {"0", "1", "2"} and table["2"]["status"] == "incomplete"
    columns = list(table["0"])
    assert columns[2] == "seed" and "model.d_vocab" not in columns and "model.n_ctx" not in columns
    assert table["2"]["error"] == "config.yaml is not a YAML mapping; no metrics.json"
    assert "Incomplete: 2 (config.yaml" in printed and "not counted as differences" in printed
    assert "Skipped, half-written (task unknown): 3 (no config.yaml" in printed
