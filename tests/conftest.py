"""Shared fixtures: run train.py as a user would, in a subprocess, offline."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One torch thread per process: pytest's two workers already fill both cores, and a second thread per tiny
# train.py run only spins against the other worker (two concurrent SAE runs: 17.6 s with 2 threads each,
# 12.5 s with 1). Set before any test imports torch; an explicit value in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("INTERP_THREADS", "1")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenized-data cache for the whole test session (as a user's .cache/ would be)."""
    return Path(os.environ.get("INTERP_TEST_CACHE_DIR") or tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def train_env(cache_dir) -> dict:
    env = dict(os.environ, INTERP_CACHE_DIR=str(cache_dir), WANDB_SILENT="true", HYDRA_FULL_ERROR="0")
    env.pop("WANDB_MODE", None)
    return env


@pytest.fixture(scope="session")
def run_train(train_env):
    """run_train(*overrides, run_dir=None, expect_ok=True, env=train_env) -> CompletedProcess of
    `python train.py ...`."""

    def _run(*overrides, run_dir: Path | None = None, expect_ok: bool = True, multirun: bool = False,
             timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        args = [sys.executable, str(REPO / "train.py")] + (["-m"] if multirun else []) + list(overrides)
        if run_dir is not None:
            args.append(f"hydra.{'sweep' if multirun else 'run'}.dir={run_dir}")
        proc = subprocess.run(args, cwd=REPO, env=env or train_env, capture_output=True, text=True,
                              timeout=timeout)
        if expect_ok and proc.returncode != 0:
            raise AssertionError(f"train.py {' '.join(overrides)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc

    return _run


# Small data for end-to-end runs: a few stdlib files, a few exact-match questions.
FAST = ["debug=fast", "data.max_files=24"]
FAST_BY_DATA = {
    "code": FAST,
    "qa": ["debug=fast", "data.exact_match_max=8", "data.max_facts_per_relation=20"],
    "induction": ["debug=fast", "data.num_train=512", "data.num_val=16"],
    "arithmetic": ["debug=fast", "data.num_train=4096", "data.num_val=256", "data.num_test=256"],
}

# Small SAE runs (with task=sae and a base): a few steps on a small harvest.
SAE_FAST_COMMON = ["task=sae", "debug=fast", "sae.harvest_tokens=2048", "sae.batch_size=128", "sae.buffer_tokens=512",
                   "sae.eval_batches=2", "sae.expansion=2", "sae.norm_estimate_batches=4", "logger=csv"]


@pytest.fixture(scope="session")
def tiny_sae_sweep(run_train, tmp_path_factory):
    """A tiny base run (1-layer transformer on code) and a 2-job sweep of TopK SAEs on it (resid_pre and
    resid_post of block 0), each ending with the `features` study (a callback): {"base", "sweep", "jobs"}."""
    root = tmp_path_factory.mktemp("sae_sweep")
    run_train("model=transformer_1l", "data=code", *FAST, "logger=none", run_dir=root / "base")
    callback = "+callbacks.features={_target_:interp.callbacks.AnalysisCallback,analysis:features,k:5}"
    run_train(*SAE_FAST_COMMON, f"base_run={root / 'base'}", "sae=topk", "sae.k=4",
              "sae.hook=blocks.0.hook_resid_pre,blocks.0.hook_resid_post", f"sae.cache.root={root / 'cache'}",
              callback, run_dir=root / "sweep", multirun=True)
    return {"base": root / "base", "sweep": root / "sweep", "jobs": [root / "sweep" / str(i) for i in range(2)]}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: a second BLAS thread only spins against the other processes on a shared CPU (measured 30x).
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The longest files first (seconds measured with --durations on 2 cores, the largest first). pytest-xdist's
# `--dist loadfile` hands whole files to the workers in collection order, and collection is alphabetical, which
# put the longest files (test_sae_train, test_train, test_sweep, test_transcoders) last: one worker then finished
# minutes before the other. Longest first is the classic fix for that tail (LPT scheduling).
LONGEST_FIRST = ("test_sae_train.py", "test_train.py", "test_explorer.py", "test_many_dictionaries.py",
                 "test_transcoders.py", "test_sweep.py", "test_analyze.py", "test_bad_input.py", "test_pretrained_base.py",
                 "test_analyze_wandb.py", "test_features_e2e.py", "test_checkpoint_safety.py", "test_data_mix.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: a file's own order is kept
