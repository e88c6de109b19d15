"""End to end: `python train.py experiment=arithmetic_sae` trains its base once, then an SAE whose features the
alignment analysis scores against the task's variables, during training and from analyze.py alike. (Its own
file, so the test workers share the SAE end-to-end tests more evenly.)"""

import json
import subprocess
import sys

import pytest
from conftest import FAST_BY_DATA, REPO, SAE_FAST_COMMON

pytestmark = pytest.mark.slow
SAE_FAST = SAE_FAST_COMMON


def test_arithmetic_sae_trains_its_base_once_then_reports_feature_alignment(run_train, train_env, tmp_path):
    base = ",".join(f'"{o}"' for o in ["experiment=arithmetic_mlp", *FAST_BY_DATA["arithmetic"]])
    args = ["experiment=arithmetic_sae", "base_run=auto", f"base_overrides=[{base}]",
            f"paths.base_runs_dir={tmp_path / 'bases'}", *SAE_FAST[1:], "sae.d_sae=256"]
    first = run_train(*args, run_dir=tmp_path / "sae1")
    assert "training the base run first" in first.stdout
    assert len(list((tmp_path / "bases").glob("*/metrics.json"))) == 1
    metrics = json.loads((tmp_path / "sae1" / "metrics.json").read_text())
    assert {"val/task_mse_with_sae", "analysis/alignment/features/ptr1/mean", "analysis/alignment/features/ptr1_a/dedicated",
            "analysis/alignment/neurons/blocks.0.hook_post/task/mean", "analysis/alignment/sae_minus_neurons"
            } <= set(metrics)
    figures = tmp_path / "sae1" / "figures" / "alignment"
    assert "| ptr1_a | " in (figures / "alignment.md").read_text()
    # The same analysis from the command line on the saved run gives the same numbers and files.
    from_training = {f.name: f.read_text() for f in figures.iterdir()}
    proc = subprocess.run([sys.executable, str(REPO / "analyze.py"), f"run={tmp_path / 'sae1'}", "analysis=alignment",
                           "n_samples=10000"], cwd=REPO, env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = {f.name: f.read_text() for f in figures.iterdir()}
    assert again.keys() == from_training.keys() == {"alignment.json", "alignment.md", "results.json"}
    assert json.loads(again["results.json"]) == pytest.approx(json.loads(from_training["results.json"]), abs=1e-6)
    for row, before in zip(json.loads(again["alignment.json"])["values"]["features"],
                           json.loads(from_training["alignment.json"])["values"]["features"]):
        assert row["corr"] == pytest.approx(before["corr"], abs=1e-6)
        assert {k: row[k] for k in ("variable", "value")} == {k: before[k] for k in ("variable", "value")}
    # The probe and the circuit report on the saved run; a pointer beyond its column is exit 2.
    analyze = [sys.executable, str(REPO / "analyze.py"), f"run={tmp_path / 'sae1'}"]
    proc = subprocess.run([*analyze, "analysis=[feature_probe,circuit]", "x=[8,9,5,1,3,2,9,4,7,1]", "n_samples=256"],
                          cwd=REPO, env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Number of active SAE features" in proc.stdout, proc.stderr[-2000:]
    assert (tmp_path / "sae1" / "figures" / "circuit" / "circuit_report.html").stat().st_size > 1_000_000  # plotly.js
    proc = subprocess.run([*analyze, "analysis=feature_probe", "x=[8,9,5,1,7,2,9,4,7,1]"],
                          cwd=REPO, env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "error: ptr1=7 (x[4]) points beyond" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    second = run_train(*args, run_dir=tmp_path / "sae2")   # the base is reused, not trained again
    assert "training the base run first" not in second.stdout
