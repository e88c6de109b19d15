"""A file that was written stays whole, whatever happens next: kills mid-save, a full disk, leftovers.

The run directory is put on another filesystem than $TMPDIR (/dev/shm, or a tmpfs mounted here), the
case where Lightning's own save (a temporary file in $TMPDIR, then a cross-device move) truncates
last.ckpt. scripts/checkpoint_kill_trials.py counts the same trial for Lightning's CheckpointIO too.
"""

import contextlib
import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, REPO

from interp.errors import DiskFull
from interp.files import atomic_dir, atomic_write_text, remove_stale_temps
from interp.run_dir import read_checkpoint, read_metrics


def kill_trials():
    spec = importlib.util.spec_from_file_location("kill_trials", REPO / "scripts" / "checkpoint_kill_trials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (root only), unmounted after; skips where it cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def other_filesystem(run_dir: Path) -> str:
    """A $TMPDIR on another filesystem than `run_dir`."""
    if os.stat("/dev/shm").st_dev == os.stat(run_dir).st_dev:
        pytest.skip("/dev/shm is on the run directory's filesystem here")
    return "/dev/shm"


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_a_checkpoint_killed_mid_save_at_random_moments_always_loads(tmp_path):
    trials = kill_trials()
    tmpdir = other_filesystem(tmp_path)
    path = tmp_path / "checkpoints" / "last.ckpt"
    rng = random.Random(0)
    seconds = trials.save_seconds("interp", path, tmpdir, 32)
    results = [trials.trial("interp", path, tmpdir, 32, rng, 3 * seconds) for _ in range(16)]
    assert all(ok for ok, _ in results), results
    # Kills mid-save leave hidden temporaries beside the checkpoint; the next save removes those of dead processes.
    atomic_write_text(path.parent / "last.ckpt", "x")
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_temporaries_of_dead_processes_are_removed_and_live_or_foreign_ones_kept(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".last.ckpt.tmp-{host}-{dead_pid()}-abc123_x"
    live = tmp_path / f".last.ckpt.tmp-{host}-{os.getpid()}-def456"
    foreign = tmp_path / ".last.ckpt.tmp-another-host-1-ghi789"
    legacy = tmp_path / f"0123abcd.tmp-{dead_pid()}"   # an activation cache folder of earlier versions
    other_target = tmp_path / f".best.ckpt.tmp-{host}-{dead_pid()}-jkl012"
    for p in (dead, live, foreign, other_target):
        p.write_text("partial")
    legacy.mkdir()
    (legacy / "acts.npy").write_bytes(b"\0" * 100)
    atomic_write_text(tmp_path / "last.ckpt", "new")   # cleans its own target's temporaries only
    assert not dead.exists() and live.exists() and foreign.exists() and other_target.exists() and legacy.exists()
    assert set(remove_stale_temps(tmp_path)) == {other_target, legacy}
    assert live.exists() and foreign.exists()


def test_a_folder_written_atomically_is_whole_or_the_old_one(tmp_path):
    target = tmp_path / "sae"
    with atomic_dir(target) as tmp:
        (tmp / "cfg.json").write_text("{}")
    assert (target / "cfg.json").read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "cfg.json").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (target / "cfg.json").read_text() == "{}"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"] and sorted(os.listdir(target)) == ["weights"]


def test_a_write_that_fills_the_disk_is_one_error_naming_the_disk_and_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "small", "64k") as disk:
        atomic_write_text(disk / "metrics.json", "old")
        with pytest.raises(DiskFull, match=f"no space left on {disk} while writing {disk / 'metrics.json'}"):
            atomic_write_text(disk / "metrics.json", "x" * 200_000)
        assert (disk / "metrics.json").read_text() == "old" and os.listdir(disk) == ["metrics.json"]


def start_training(train_env, run_dir: Path, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, str(REPO / "train.py"), "model=transformer_1l", *FAST, "logger=none",
            "trainer.val_check_interval=1", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(args, cwd=REPO, env=train_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_a_run_killed_while_saving_resumes_from_its_last_complete_checkpoint(train_env, tmp_path):
    """Two runs killed at random moments while they rewrite best.ckpt and last.ckpt at every step, with $TMPDIR
    on another filesystem: each time last.ckpt loads, and a third run resumes from it to the end."""
    env = dict(train_env, TMPDIR=other_filesystem(tmp_path))
    rng = random.Random(1)
    ckpt_path, step = "null", 0
    for attempt in range(2):
        run_dir = tmp_path / f"run{attempt}"
        proc = start_training(env, run_dir, "trainer.max_steps=400", f"ckpt_path={ckpt_path}")
        last = run_dir / "checkpoints" / "last.ckpt"
        deadline = time.time() + 300
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert last.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint in 300 s"
        time.sleep(rng.uniform(0.5, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        config, raw = read_checkpoint(last)   # never a truncated file
        assert raw["global_step"] >= max(step, 1)
        ckpt_path, step = last, raw["global_step"]
    final = tmp_path / "resumed"
    proc = start_training(env, final, f"ckpt_path={ckpt_path}", f"trainer.max_steps={step + 2}")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    assert read_metrics(final)["trainer/global_step"] == step + 2


@pytest.mark.slow
def test_a_disk_that_fills_during_training_stops_the_run_and_keeps_its_checkpoints(run_train, tmp_path):
    # 60 MB: the first validation's best.ckpt and last.ckpt (27 MB each) fit, the next best.ckpt does not.
    with tmpfs(tmp_path / "disk", "60m") as disk:
        proc = run_train("model=transformer_2l", *FAST, "logger=csv", "trainer.max_steps=20",
                         "trainer.val_check_interval=2", run_dir=disk / "run", expect_ok=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        message = proc.stderr.strip().splitlines()[-1]
        assert message.startswith(f"error: no space left on {disk} while writing {disk / 'run' / 'checkpoints'}")
        assert f"ckpt_path={disk / 'run' / 'checkpoints' / 'last.ckpt'}" in message
        metrics = read_metrics(disk / "run")
        assert metrics["status"] == "failed" and metrics["error_type"] == "DiskFull"
        for name in ("best", "last"):   # both still whole, from the first validation
            _, raw = read_checkpoint(disk / "run" / "checkpoints" / f"{name}.ckpt")
            assert raw["global_step"] == 2
        assert sorted(os.listdir(disk / "run" / "checkpoints")) == ["best.ckpt", "last.ckpt"]
