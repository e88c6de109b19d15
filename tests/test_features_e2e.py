"""End to end: the feature study as a training callback, and analyze.py's features, highlight and
feature_layers on a tiny SAE sweep (tests/conftest.py: tiny_sae_sweep), with their bad input."""

import json
import subprocess
import sys

import pytest
from conftest import REPO
from omegaconf import OmegaConf

from interp.analyses import highlight
from interp.errors import ConfigError
from interp.runs import load_run
from interp.targets import compared_runs, subject_of

pytestmark = pytest.mark.slow


def analyze(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)


def test_callback_puts_specialist_scores_in_metrics(tiny_sae_sweep):
    metrics = json.loads((tiny_sae_sweep["jobs"][0] / "metrics.json").read_text())
    scores = [metrics[f"analysis/features/specialist_score/{c}"] for c in ("python", "math", "social")]
    assert all(isinstance(s, (int, float)) for s in scores)
    assert metrics["analysis/features/specialists_found"] == sum(
        metrics[k] >= 1 for k in metrics if k.startswith("analysis/features/specialist_score/"))
    study = json.loads((tiny_sae_sweep["jobs"][0] / "figures" / "features" / "features.json").read_text())
    assert study["hook"] == "blocks.0.hook_resid_pre" and len(study["rankings"]["strongest"]) <= 5


def test_features_and_highlight_from_analyze(tiny_sae_sweep, train_env):
    job = tiny_sae_sweep["jobs"][1]
    proc = analyze(train_env, f"run={job}", "analysis=[features,highlight]", "k=3", "feature=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((job / "figures" / "features" / "features.json").read_text())
    assert study["hook"] == "blocks.0.hook_resid_post" and len(study["rankings"]["composite"]) <= 3
    results = json.loads((job / "figures" / "features" / "results.json").read_text())
    assert results["specialists_found"] == study["specialists_found"]
    page = (job / "figures" / "highlight" / "feature_3.html").read_text()
    assert page.count('class="text"') == study["n_texts"] and "<h2>python" in page and "neuronpedia" not in page


def test_highlight_out_of_range_writes_nothing(tiny_sae_sweep, tmp_path):
    run = load_run(tiny_sae_sweep["jobs"][0])
    subject = subject_of(run)
    width = run.sae.cfg.d_sae
    with pytest.raises(ConfigError, match=rf"feature {width} is out of range: this SAE has {width} features"):
        highlight.run(subject.model, subject.datamodule, tmp_path / "out", sae=run.sae, feature=width)
    assert not (tmp_path / "out").exists()


def test_feature_layers_on_a_sweep_directory(tiny_sae_sweep, train_env):
    sweep = tiny_sae_sweep["sweep"]
    proc = analyze(train_env, f"run={sweep}", "analysis=feature_layers", "k=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = sweep / "figures" / "feature_layers"
    summary = json.loads((out / "summary.json").read_text())
    results = json.loads((out / "results.json").read_text())   # the runner's: flat, per SAE
    assert summary["saes"] == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]   # ordered by depth
    for job, hook in zip(tiny_sae_sweep["jobs"], summary["saes"]):
        metrics = json.loads((job / "metrics.json").read_text())   # the callback studied the same SAE
        assert summary["scores"]["math"][hook] == metrics["analysis/features/specialist_score/math"]
        assert results[f"specialist_score/math/{hook}"] == summary["scores"]["math"][hook]
        assert results[f"specialists_found/{hook}"] == metrics["analysis/features/specialists_found"]
    assert {p.name for p in out.iterdir()} >= {"specialist_scores.png", "strongest.png", "most_frequent.png",
                                                "specialists_found.png", "feature_layers.html", "summary.md"}
    assert "| math |" in proc.stdout


def test_feature_layers_bad_input(tiny_sae_sweep, tmp_path):
    empty = tmp_path / "empty_sweep"
    (empty / "0").mkdir(parents=True)
    cfg = OmegaConf.create({"run": str(empty), "which": "last", "device": "cpu"})
    with pytest.raises(ConfigError, match="holds no SAE runs.*Fix:"):
        compared_runs(cfg)
    cfg.run = str(tiny_sae_sweep["base"])
    with pytest.raises(ConfigError, match="is not an SAE run"):
        compared_runs(cfg)
    cfg.run = [str(job) for job in tiny_sae_sweep["jobs"]]     # a list of runs works like the sweep
    runs, root = compared_runs(cfg)
    assert [r.sae.cfg.metadata.hook_name for r in runs] == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]
    assert root == tiny_sae_sweep["sweep"].resolve()
