"""A pretrained model as a first-class base: task=sae on it, analyses of it, pretrained SAEs on it
(offline, on a tiny real GPT-2 saved with transformers)."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, SAE_FAST_COMMON
from sae_lens import SAE
from tiny_gpt2 import make_tiny_gpt2

from interp.runs import load_run

pytestmark = pytest.mark.slow

DATA = ["data=code", "data.vocab_size=50257", "data.seq_len=32", "data.max_files=24", "data.batch_size=4"]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return make_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny")


@pytest.fixture(scope="module")
def sae_run(gpt2_dir, run_train, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sae") / "run"
    run_train(*SAE_FAST_COMMON, "model=gpt2", f"model.local_dir={gpt2_dir}", *DATA, "sae=topk", "sae.k=4",
              "sae.hook=blocks.0.hook_resid_post", run_dir=run_dir)
    return run_dir


def analyze(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)


def test_an_sae_trains_on_a_pretrained_model_and_round_trips_through_saelens(sae_run, gpt2_dir):
    from test_sae_train import sae_metrics_again

    metrics = json.loads((sae_run / "metrics.json").read_text())
    config = load_run(sae_run).config
    pretrained = config["base"]["pretrained"]
    assert pretrained["local_dir"] == str(gpt2_dir) and pretrained["weights_sha256"]   # what it learned from
    again = sae_metrics_again(sae_run)
    for key in ("mse", "explained_variance", "l0", "ce_loss_with_sae"):
        assert again[key] == pytest.approx(metrics[f"val/{key}"], rel=1e-4, abs=1e-6), key
    saved = SAE.load_from_disk(str(sae_run / "sae"))
    assert saved.cfg.metadata.model_from_pretrained_kwargs["center_writing_weights"] is True


def test_analyses_run_on_a_pretrained_model_with_its_own_or_a_pretrained_sae(sae_run, gpt2_dir, train_env, tmp_path):
    model = ["model=gpt2", f"model.local_dir={gpt2_dir}", *DATA]
    proc = analyze(train_env, *model, "analysis=topk_next", "prompt=Hello world", f"out_dir={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "a/figures/topk_next/results.json").read_text())["top1_prob_mean"] > 0
    # The SAE of an SAE run, loaded as a pretrained SAE from its folder: the same numbers as the run itself.
    proc = analyze(train_env, f"run={sae_run}", "analysis=hidden_pca")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = analyze(train_env, *model, "sae=pretrained", f"sae.path={sae_run / 'sae'}", "analysis=hooks")
    assert proc.returncode == 0 and "blocks.0.hook_resid_post" in proc.stdout, proc.stderr[-2000:]



def test_feature_dashboard_steering_and_attribution_on_gpt2_with_a_pretrained_sae(sae_run, gpt2_dir, train_env,
                                                                                tmp_path):
    proc = analyze(train_env, "model=gpt2", f"model.local_dir={gpt2_dir}", *DATA, "sae=pretrained",
                   f"sae.path={sae_run / 'sae'}", "analysis=[dashboard,steer,attribute]", "features=[0,5]",
                   "max_tokens=1000", "feature=5", "scale=8", "prompt=Hello world", "answer=!", "max_new_tokens=3",
                   f"out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pages = json.loads((tmp_path / "figures/dashboard/dashboard.json").read_text())
    assert [p["feature"] for p in pages] == [0, 5] and pages[0]["logits"] is not None   # LN folded into W_U
    assert "without:" in proc.stdout and (tmp_path / "figures/steer/steer.md").exists()
    assert json.loads((tmp_path / "figures/attribute/results.json").read_text())["decomposition_residual"] < 1e-3

def test_feature_layers_compares_pretrained_saes_on_gpt2_by_path(sae_run, gpt2_dir, run_train, train_env, tmp_path):
    """S1's layer comparison on a pretrained model, SAEs given as folders (sae.path=[...]), ordered by depth."""
    deeper = tmp_path / "deeper"
    run_train(*SAE_FAST_COMMON, "model=gpt2", f"model.local_dir={gpt2_dir}", *DATA, "sae=topk", "sae.k=4",
              "sae.hook=blocks.1.hook_resid_post", run_dir=deeper)
    out = tmp_path / "compared"
    proc = analyze(train_env, "model=gpt2", f"model.local_dir={gpt2_dir}", *DATA, "sae=pretrained",
                   f"sae.path=[{deeper / 'sae'},{sae_run / 'sae'}]", "analysis=feature_layers", "k=5", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "figures/feature_layers/summary.json").read_text())
    assert results["saes"] == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert set(results["scores"]) == {"python", "web", "math", "non_english", "social", "formal", "conversational"}
    assert "| math |" in proc.stdout and (out / "figures/feature_layers/specialist_scores.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["model=gpt2", "model.local_dir=/nonexistent/gpt2"], "local_dir"),
    (["model=transformer_1l", "data=code"], "Fix: run=<run dir of that model>"),
    ([], "nothing to analyse"),
])
def test_bad_pretrained_input_is_one_clear_error(args, message, train_env):
    proc = analyze(train_env, *args, *(DATA if "data=code" not in args else []), "analysis=topk_next")
    assert proc.returncode == 2 and message in proc.stderr and "Fix" in proc.stderr, proc.stderr[-2000:]


def test_an_attribution_graph_on_gpt2_through_transcoders_given_as_saelens_folders(gpt2_dir, train_env, tmp_path):
    """GPT-2 (LayerNorm folded, as loaded by default) with a skip transcoder per layer saved in SAELens's format
    (its own SkipTranscoder class): `sae.path=[...]` makes them the dictionaries of the graph."""
    import torch
    from tiny_gpt2 import D_MODEL, N_LAYERS

    from interp.sae.spec import build_training_sae, inference_sae

    folders = []
    for layer in range(N_LAYERS):
        torch.manual_seed(layer)
        hook = f"blocks.{layer}.ln2.hook_normalized"
        sae = build_training_sae({"architecture": "standard", "expansion": 4, "hook": hook, "skip": True,
                                  "target_hook": f"blocks.{layer}.hook_mlp_out", "apply_b_dec_to_input": False},
                                 d_in=D_MODEL, hook=hook)
        with torch.no_grad():
            for p in sae.parameters():
                p.add_(0.1 * torch.randn_like(p))
        inference_sae(sae).save_model(tmp_path / f"tc{layer}")
        folders.append(str(tmp_path / f"tc{layer}"))
    model = ["model=gpt2", f"model.local_dir={gpt2_dir}", *DATA, "sae=pretrained", "analysis=attribution_graph",
             "prompt=Hello world, hello"]
    proc = analyze(train_env, *model, f"sae.path=[{folders[1]},{folders[0]}]", f"out_dir={tmp_path / 'g'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "g" / "figures" / "attribution_graph"
    doc = json.loads((out / "graph.json").read_text())
    assert doc["metadata"]["transcoder_list"] == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    assert 0 <= json.loads((out / "results.json").read_text())["replacement_score"] <= 1
