"""Several dictionaries from one pass of the base model (interp.sae.dictionaries): hooks by list or
wildcard, one cache of every hook, each dictionary equal to its single run, saved, analysed and compared
one by one; a NaN in one stops that one alone; bad input refused before any harvest."""

import json
import subprocess
import sys
from urllib.parse import quote_plus

import pytest
import torch
from conftest import FAST, REPO, SAE_FAST_COMMON

from interp.errors import ConfigError
from interp.sae.dictionaries import Layout, check_budget, expand, memory_bytes, split
from interp.sae.sites import Sites
from interp.sae.spec import parse_spec

HOOKS = ["hook_embed", "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post",
         "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]


def test_hooks_by_list_and_wildcard_in_the_models_order():
    assert expand("blocks.*.hook_resid_post", HOOKS) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert expand(["blocks.1.hook_mlp_out", "hook_embed"], HOOKS) == ["hook_embed", "blocks.1.hook_mlp_out"]
    spec, _ = parse_spec({"hook": "blocks.*.ln2.hook_normalized", "target_hook": "blocks.*.hook_mlp_out", "skip": True})
    pairs = [(s.hook, s.target_hook, s.skip) for s in split(spec, HOOKS)]
    assert pairs == [("blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out", True),
                     ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out", True)]


@pytest.mark.parametrize("hook, target, message", [
    ("blocks.*.hook_attn_out", None, "matches no hook of the model"),
    (["blocks.0.hook_mlp_out", "blocks.0.hook_mlp_out"], None, "lists blocks.0.hook_mlp_out twice"),
    (["blocks.0.hook_resid_post", "blocks.*.hook_resid_post"], None, "names blocks.0.hook_resid_post twice"),
    ("blocks.*.ln2.hook_normalized", "blocks.1.hook_mlp_out", "one target per input"),
])
def test_bad_hook_lists_are_refused_with_a_fix(hook, target, message):
    spec, _ = parse_spec({"hook": hook, "target_hook": target})
    with pytest.raises(ConfigError, match=message) as e:
        split(spec, HOOKS)
    assert "Fix:" in str(e.value)


def test_variants_are_every_combination_of_the_listed_settings():
    from interp.sae.dictionaries import variants

    out = variants({"hook": "h", "k": [8, 16], "d_sae": [64, 128], "expansion": 4})
    assert [(v["k"], v["d_sae"], suffix) for v, suffix, _ in out] == [
        (8, 64, "-k8-d_sae64"), (8, 128, "-k8-d_sae128"), (16, 64, "-k16-d_sae64"), (16, 128, "-k16-d_sae128")]
    assert out[0][2] == {"sae.k": 8, "sae.d_sae": 64} and variants({"k": 8}) == [({"k": 8}, "", {})]
    with pytest.raises(ConfigError, match="sae.k lists 4 twice.*Fix:"):
        variants({"k": [4, 4]})


def test_each_dictionary_reads_one_slice_of_the_shared_row():
    sites = [Sites("blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"), Sites("blocks.1.hook_resid_post",
                                                                                   "blocks.1.hook_resid_post")]
    layout = Layout.of(sites)
    assert layout.hooks == ("blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out", "blocks.1.hook_resid_post")
    layout = Layout(layout.hooks, (8, 8, 16))
    assert layout.columns(sites[0]) == slice(0, 16) and layout.columns(sites[1]) == slice(16, 32)
    assert layout.stop_layer() == 2


def test_the_memory_estimate_and_its_budget():
    # 4 * (4 * params + batch rows in and out + 2 batch x d_sae): what Adam training holds in float32
    assert memory_bytes(4, 8, 4, False, 2) == 4 * (4 * (32 + 8 + 32 + 4) + 2 * 8 + 2 * 2 * 8)
    assert memory_bytes(4, 8, 4, True, 2) - memory_bytes(4, 8, 4, False, 2) == 4 * 4 * 16   # W_skip, d_in x d_out
    needs = {"a": 2**30, "b": 2**29}
    assert "1.50 GiB" in check_budget(needs, None)
    with pytest.raises(ConfigError, match=r"more than sae.memory_budget_gb=1.0.*largest: a"):
        check_budget(needs, 1.0)


def test_a_nan_stops_one_dictionary_and_the_others_train_on():
    """Two dictionaries in one real Lightning fit; the second's columns turn to inf at step 3: it stops there
    (weights frozen, recorded), the first trains every step, as it would alone."""
    import pytorch_lightning as pl

    from interp.sae.task import SAETask

    spec = {"architecture": "topk", "k": 2, "expansion": 2, "dead_feature_window": 100, "feature_sampling_window": 100}
    specs = [parse_spec({**spec, "hook": h}) for h in ("a", "b")]
    optim = {"name": "Adam", "lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0, "warmup_steps": 0,
             "schedule": "constant", "min_lr_ratio": 1.0}
    task = SAETask({"sae": spec, "optim": optim, "data": {}, "seed": 0}, 4, None,
                   [(s, kw, 4, slice(4 * i, 4 * i + 4)) for i, (s, kw) in enumerate(specs)])
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(16, 8, generator=g) for _ in range(6)]
    for b in batches[3:]:
        b[:, 4:] = float("inf")
    before = [d.sae.W_dec.detach().clone() for d in task.dictionaries]
    trainer = pl.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, gradient_clip_val=1.0, log_every_n_steps=1)
    task.on_fit_end = lambda: None   # no run directory to save into here
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    first, second = task.dictionaries
    assert first.failed is None and second.failed.startswith("SAE loss became") and "step 3" in second.failed
    assert task.outcome() == {"failed_dictionaries": {"b": second.failed}}
    assert not torch.equal(first.sae.W_dec, before[0]) and torch.isfinite(first.sae.W_dec).all()
    assert torch.isfinite(second.sae.W_dec).all() and not second.sae.W_dec.requires_grad
    assert int(first.tracker.n_samples) == 6 * 16 and int(second.tracker.n_samples) == 3 * 16


def test_a_checkpoint_from_before_several_dictionaries_still_loads():
    from interp.sae.task import SAETask

    spec = {"architecture": "topk", "k": 2, "expansion": 2, "hook": "h"}
    config = {"sae": spec, "optim": {}, "data": {}, "seed": 0}
    old = {k.removeprefix("dictionaries.0."): v for k, v in SAETask(config, 4).state_dict().items()}
    assert "sae.W_enc" in old and "tracker.steps_since_fired" in old
    checkpoint = {"state_dict": old, "activation_scaler": {"scaling_factor": 2.0}}
    task = SAETask(config, 4)
    task.on_load_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(task.sae.W_enc, old["sae.W_enc"]) and task.dictionaries[0].scaler.scaling_factor == 2.0


# --- end to end: train.py, analyze.py -------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(run_train, tmp_path_factory):
    """A tiny 2-layer base; one run of SAEs on every block's resid_post (a wildcard, one pass), the single
    run of block 1's, and one pass of skip transcoders for both MLPs."""
    root = tmp_path_factory.mktemp("many")
    run_train("model=transformer", "model.d_model=64", "model.n_heads=2", "model.d_mlp=128", "data=code", *FAST,
              "logger=none", run_dir=root / "base")
    common = [*SAE_FAST_COMMON, f"base_run={root / 'base'}", f"sae.cache.root={root / 'cache'}"]
    run_train(*common, "sae=topk", "sae.k=4", "sae.hook=blocks.*.hook_resid_post", run_dir=root / "many")
    run_train(*common, "sae=topk", "sae.k=4", "sae.hook=blocks.1.hook_resid_post", run_dir=root / "one")
    run_train(*common, "sae=transcoder", "sae.k=4", "sae.hook=blocks.*.ln2.hook_normalized",
              "sae.target_hook=blocks.*.hook_mlp_out", run_dir=root / "transcoders")
    run_train(*common, "sae=topk", "sae.k=[2,4]", "sae.hook=blocks.1.hook_resid_post", run_dir=root / "variants")
    return root


pytestmark_slow = pytest.mark.slow
LABELS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


@pytestmark_slow
def test_one_pass_trains_each_dictionary_as_its_own_run_would(runs):
    from sae_lens import SAE
    from safetensors.torch import load_file

    many = json.loads((runs / "many" / "metrics.json").read_text())
    one = json.loads((runs / "one" / "metrics.json").read_text())
    assert many["data/cache_harvested"] == 1   # one harvest of both hooks
    caches = [p for p in (runs / "cache").iterdir() if p.is_dir()]
    assert len(caches) == 3   # the pair of resid_posts, block 1's alone (the variants' too), the transcoders' four hooks
    for key in ("mse", "explained_variance", "l0", "ce_loss_score", "dead_features"):
        assert many[f"val/{key}/{LABELS[1]}"] == pytest.approx(one[f"val/{key}"], rel=1e-6, abs=1e-9), key
    ours = load_file(str(runs / "many" / "saes" / LABELS[1] / "sae_weights.safetensors"))
    alone = load_file(str(runs / "one" / "sae" / "sae_weights.safetensors"))
    assert ours.keys() == alone.keys()
    for k in ours:
        torch.testing.assert_close(ours[k], alone[k], rtol=0, atol=1e-6)
    for label in LABELS:
        sae = SAE.load_from_disk(str(runs / "many" / "saes" / label))
        assert sae.cfg.metadata.hook_name == label
    config = (runs / "many" / "config.yaml").read_text()
    assert "dictionaries:" in config and LABELS[0] in config


@pytestmark_slow
def test_a_pass_of_skip_transcoders_saves_each_as_saelens_loads_it(runs):
    import interp.sae  # noqa: F401  (registers the TopK transcoders with SAELens)
    from sae_lens import SAE

    for layer in (0, 1):
        sae = SAE.load_from_disk(str(runs / "transcoders" / "saes" / f"blocks.{layer}.hook_mlp_out"))
        assert sae.cfg.architecture() == "topk_skip_transcoder"
        assert (sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out) == (
            f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out")
    metrics = json.loads((runs / "transcoders" / "metrics.json").read_text())
    assert {f"val/ce_loss_score/blocks.{i}.hook_mlp_out" for i in (0, 1)} <= set(metrics)


def analyze(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=600)


@pytestmark_slow
def test_analyses_take_one_dictionary_of_the_run_or_compare_them_all(runs, train_env):
    many = runs / "many"
    proc = analyze(train_env, f"run={many}", "analysis=features", "k=3")
    assert proc.returncode == 2 and "dictionary=<one of blocks.0.hook_resid_post" in proc.stderr
    proc = analyze(train_env, f"run={many}", "analysis=features", f"dictionary={LABELS[1]}", "k=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (many / "figures" / "features" / LABELS[1] / "results.json").is_file()
    proc = analyze(train_env, f"run={many}", "analysis=feature_layers", "k=3", "wandb=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((many / "figures" / "feature_layers" / "summary.json").read_text())["saes"] == LABELS

    from interp.compare.report import compare

    report = compare([many], out=runs / "compared", wandb=False)
    assert [row[0] for row in report["sae"]["table"].rows] == [f"many/{label}" for label in LABELS]
    from interp.compare.runs import read_runs

    one = json.loads((runs / "one" / "metrics.json").read_text())
    assert read_runs(many)[1].metrics["val/loss"] == pytest.approx(one["val/loss"], rel=1e-6)   # its own MSE
    assert (runs / "compared" / "pareto_l0_explained_variance.png").is_file()


@pytestmark_slow
def test_variants_on_one_hook_train_side_by_side_from_the_single_runs_cache(runs):
    """sae.k=[2,4]: two dictionaries on the same rows, the k=4 one equal to the single k=4 run; compared as a sweep."""
    from safetensors.torch import load_file

    from interp.compare.runs import read_runs

    metrics = json.loads((runs / "variants" / "metrics.json").read_text())
    one = json.loads((runs / "one" / "metrics.json").read_text())
    assert metrics["data/cache_harvested"] == 0   # block 1's cache, harvested by the single run
    assert metrics[f"val/l0/{LABELS[1]}-k2"] == pytest.approx(2) and metrics[f"val/l0/{LABELS[1]}-k4"] == pytest.approx(4)
    assert metrics[f"val/mse/{LABELS[1]}-k4"] == pytest.approx(one["val/mse"], rel=1e-6)
    ours = load_file(str(runs / "variants" / "saes" / f"{LABELS[1]}-k4" / "sae_weights.safetensors"))
    alone = load_file(str(runs / "one" / "sae" / "sae_weights.safetensors"))
    for k in ours:
        torch.testing.assert_close(ours[k], alone[k], rtol=0, atol=1e-6)
    per = read_runs(runs / "variants")
    assert [(r.dictionary, r.params["sae.k"]) for r in per] == [(f"{LABELS[1]}-k2", 2), (f"{LABELS[1]}-k4", 4)]


@pytestmark_slow
@pytest.mark.parametrize("overrides, message", [
    # a wildcard, variants and the budget; the other refusals: the unit tests above (the same code, before any harvest)
    (["sae.hook=blocks.*.hook_resid_post", "sae.k=[2,4]", "sae.memory_budget_gb=0.0001"],
     "4 dictionaries need about"),
])
def test_bad_dictionary_lists_stop_the_run_before_any_harvest(runs, run_train, tmp_path, overrides, message):
    proc = run_train(*SAE_FAST_COMMON, f"base_run={runs / 'base'}", f"sae.cache.root={tmp_path / 'cache'}", "sae=topk",
                     "sae.k=4", "sae.hook=blocks.0.hook_resid_post", *overrides, run_dir=tmp_path / "r",
                     expect_ok=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and message in line and "Fix:" in line, line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r" / "saes").exists()
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytestmark_slow
def test_a_run_of_several_dictionaries_resumes_where_it_stopped(runs, run_train, tmp_path):
    """Stopped at step 6 and resumed to 12: every dictionary's weights and firing counts go on from the
    checkpoint (12 steps of rows counted, not 6), each saved."""
    common = [*SAE_FAST_COMMON, f"base_run={runs / 'base'}", f"sae.cache.root={runs / 'cache'}", "sae=topk",
              "sae.k=4", "sae.hook=blocks.*.hook_resid_post", "trainer.val_check_interval=6"]
    run_train(*common, "trainer.max_steps=6", run_dir=tmp_path / "part")
    stopped = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)
    run_train(*common, "trainer.max_steps=12", f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}",
              run_dir=tmp_path / "part")
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)
    assert stopped["global_step"] == 6 and resumed["global_step"] == 12
    for i in range(len(LABELS)):
        key = f"dictionaries.{i}.tracker.n_samples"
        assert int(stopped["state_dict"][key]) == 6 * 128 and int(resumed["state_dict"][key]) == 12 * 128
        assert not torch.equal(stopped["state_dict"][f"dictionaries.{i}.sae.W_dec"],
                               resumed["state_dict"][f"dictionaries.{i}.sae.W_dec"])
    assert json.loads((tmp_path / "part" / "metrics.json").read_text())["trainer/global_step"] == 12
    assert sorted(p.name for p in (tmp_path / "part" / "saes").iterdir()) == LABELS


def test_a_dictionary_that_stopped_is_a_failed_row_of_the_comparison(tmp_path):
    """analyze.py compare's reading of a run of several dictionaries: one row each, its own metrics under the bare
    names (val/loss its MSE), the one listed in failed_dictionaries failed with its reason."""
    import yaml

    from interp.compare.runs import DONE, FAILED, read_runs

    run = tmp_path / "run"
    run.mkdir()
    dictionaries = [{"label": f"blocks.{i}.hook_resid_post", "hook": f"blocks.{i}.hook_resid_post",
                     "target_hook": f"blocks.{i}.hook_resid_post", "d_in": 8, "d_sae": 16, "settings": {}}
                    for i in (0, 1)]
    config = {"task": {"name": "sae"}, "sae": {"hook": "blocks.*.hook_resid_post", "k": 4}, "seed": 0,
              "dictionaries": dictionaries, "run_meta": {"overrides": [], "choices": {"sae": "topk"}}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"status": "done", "val/loss": 3.0, "trainer/global_step": 6,
               "val/mse/blocks.0.hook_resid_post": 2.0, "val/mse/blocks.1.hook_resid_post": 4.0,
               "failed_dictionaries": {"blocks.1.hook_resid_post": "SAE loss became nan at step 4"}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    first, second = read_runs(run)
    assert (first.name, first.status, first.metrics["val/loss"], first.metrics["trainer/global_step"]) == (
        "run/blocks.0.hook_resid_post", DONE, 2.0, 6)
    assert (second.status, second.error) == (FAILED, "SAE loss became nan at step 4")
    assert second.params["sae.hook"] == "blocks.1.hook_resid_post" and "val/mse/blocks.0.hook_resid_post" not in first.metrics


@pytest.mark.slow
def test_an_attribution_graph_through_the_transcoders_of_one_pass_from_analyze_py(runs, train_env):
    """The run of both layers' skip transcoders (one pass), then analyze.py's graph with an intervention (one call: each
    costs a process), then the explorer's graph page over HTTP and in Chromium. The maths, the budget and the
    bad-input errors are tested in-process in tests/test_attribution_graph.py."""
    run = runs / "transcoders"
    proc = subprocess.run([sys.executable, "analyze.py", f"run={run}", "analysis=attribution_graph",
                           "prompt=def add(a, b):\\n    return", "node_threshold=1.0", "edge_threshold=1.0",
                           "save_graph=true", "ablate=[1:3@2]", 'clamp=["0:1@1=2.5"]'], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=600)   # a short run: weak features, so keep them all
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run / "figures" / "attribution_graph"
    doc = json.loads((out / "graph.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["pruned_replacement_score"] <= results["replacement_score"] <= 1
    assert 0 < results["pruned_nodes"] < results["nodes"] and results["features"] > 0
    features = [n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert features and {n["layer"] for n in doc["nodes"]} >= {"E", "3"}   # tokens, logits (layer 2 + 1)
    assert "replacement score" in proc.stdout and (out / "graph.pt").is_file()
    assert "top in " in (out / "graph.html").read_text()   # a feature's top contexts, on hover
    moved = json.loads((out / "interventions.json").read_text())
    assert moved["features"] == ["1:3@2=0.0", "0:1@1=2.5"]
    assert any(t["after"] != pytest.approx(t["before"], abs=1e-6) for t in moved["frozen"])

    # the explorer: the same graph from a prompt box, over HTTP and in Chromium
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    client = TestClient(create_app([runs]))
    page = client.post("/graph", data={"path": str(run), "prompt": "<script>alert(1)</script> def f(x):",
                                       "node_threshold": "1", "edge_threshold": "1"})   # weak features: keep all
    assert page.status_code == 200, page.text[-2000:]
    assert page.text.count("<circle") > 5 and 'id="scores"' in page.text
    assert "top in " in page.text and "/feature?path=" in page.text   # each feature: its contexts, its page
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text
    bad = client.post("/graph", data={"path": str(run), "prompt": "def f(x):", "target": " return value"})
    assert bad.status_code == 400 and "one token" in bad.text
    assert f'href="/graph?path={quote_plus(str(run))}"' in client.get("/run", params={"path": str(run)}).text

    from test_explorer import browser_or_skip, explorer, open_page

    sync_playwright = browser_or_skip()
    with explorer(train_env, runs) as url, sync_playwright() as p:
        browser, tab, refused = open_page(p)
        tab.goto(f"{url}run?path={run}")
        with tab.expect_navigation():
            tab.click("#tab-graph")
        tab.fill("textarea[name=prompt]", "def add(a, b):\n    return")
        with tab.expect_navigation():
            tab.click("button[type=submit]")
        tab.wait_for_selector("#graph svg circle")
        assert tab.locator("#graph svg circle").count() > 5 and tab.locator("#scores tr").count() == 3
        assert tab.locator("#graph svg text").first.text_content() != "" and refused == [], refused
        browser.close()
