"""analyze.py on a saved run: hook listing, analyses, and its bad input."""

import json
import subprocess
import sys

import pytest
from conftest import FAST, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(run_train, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("analyze") / "run"
    run_train("model=transformer_2l", *FAST, "logger=none", run_dir=run_dir)
    return run_dir


def analyze(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)


def test_hooks_lists_names_and_shapes(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "hooks")
    assert proc.returncode == 0, proc.stderr
    assert "blocks.1.attn.hook_pattern" in proc.stdout and "[1, 4, 8, 8]" in proc.stdout
    assert "blocks.0.hook_resid_post" in proc.stdout


def test_induction_analysis_writes_results_and_figures(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "analysis=[induction]")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((trained_run / "figures/induction/results.json").read_text())
    assert len([k for k in results if k.startswith("induction/L")]) == 8   # 2 layers x 4 heads
    assert all(0.0 <= results[f"induction/L{l}H{h}"] <= 1.0 for l in range(2) for h in range(4))
    assert (trained_run / "figures/induction/induction.png").stat().st_size > 1000


def test_unknown_analysis_lists_valid_ones(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "analysis=nope")
    assert proc.returncode == 2 and "valid" in proc.stderr and "hooks" in proc.stderr


def test_not_a_run_dir(tmp_path, train_env):
    proc = analyze(train_env, f"run={tmp_path}", "hooks")
    assert proc.returncode == 2 and "not an interp run directory" in proc.stderr
