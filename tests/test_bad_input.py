"""Bad input: a clear message (what is wrong, how to fix it), non-zero exit, nothing lost."""

import hashlib
from pathlib import Path

import pytest
from conftest import FAST

from interp.errors import RunDirError
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
