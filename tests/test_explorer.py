"""The explorer (`analyze.py serve` / `index`) on a real trained run, and the default experiment's
end-of-training analyses (the same run: the default experiment at debug sizes, analyses kept).

The HTTP tests drive the app's endpoints in-process (Starlette's TestClient); the browser test starts
`analyze.py serve` on a free port and drives Debian's Chromium through Playwright (skipped, with the
reason, where either is missing). Screenshots go to $INTERP_TEST_ARTIFACTS (default test-artifacts/).
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, SAE_FAST_COMMON

PROMPT = "def add(a, b):\n    return a + b"
CHROMIUM = "/usr/bin/chromium"
# The default experiment at debug=fast sizes, but keeping its analyses (debug=fast drops them).
SMALL_DEFAULT = ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.limit_val_batches=2",
                 "trainer.enable_progress_bar=false", "data.batch_size=4", "data.max_files=24",
                 "data.max_val_chunks=16", "logger=none"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory, run_train):
    """outputs/ with the trained run and a half-written one; multirun/ with a sweep (report + a job that
    never finished). Returns (outputs, multirun, trained run dir, train.py's stdout)."""
    base = tmp_path_factory.mktemp("explorer")
    outputs, multirun = base / "outputs", base / "multirun"
    run = outputs / "2026-01-01" / "10-00-00_first"
    proc = run_train(*SMALL_DEFAULT, run_dir=run)
    half = outputs / "2026-01-01" / "11-00-00_half"
    (half / ".hydra").mkdir(parents=True)
    sweep = multirun / "2026-01-02" / "09-00-00_sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    shutil.copy(run / "config.yaml", sweep / "0" / "config.yaml")
    (sweep / "comparison.html").write_text("<html>comparison</html>")
    return outputs, multirun, run, proc.stdout


@pytest.fixture(scope="module")
def sae_run(roots, run_train):
    """A run of two TopK SAEs (each block's resid_post, one pass) on the trained run, under outputs/."""
    run = roots[0] / "2026-01-01" / "12-00-00_saes"
    run_train(*SAE_FAST_COMMON, f"base_run={roots[2]}", "sae=topk", "sae.k=4", "sae.hook=blocks.*.hook_resid_post",
              "logger=none", run_dir=run)
    return run


@pytest.fixture(scope="module")
def client(roots):
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    return TestClient(create_app([roots[0], roots[1]]))


def expected_tokens(run: Path) -> list[str]:
    from interp.data.tokenizer import Tokenizer

    tok = Tokenizer(yaml.safe_load((run / "config.yaml").read_text())["data"]["vocab_size"])
    return tok.decode_tokens([tok.eot_id] + tok.encode(PROMPT))


@pytest.mark.slow
def test_default_experiment_ends_with_its_analyses_and_says_where(roots):
    _, _, run, stdout = roots
    for figure in ("attention_grid/block_0_grid.png", "attention_grid/block_1_grid.png",
                   "induction/induction.png", "ngram/results.json"):
        assert (run / "figures" / figure).is_file(), figure
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert metrics["analysis/ngram/bigram_ce"] < metrics["analysis/ngram/unigram_ce"]
    assert "analysis/induction/induction/L1H0" in metrics
    last = stdout.strip().splitlines()[-3:]
    assert last[1].startswith(f"figures: {run / 'figures'}/ (attention_grid, induction, ngram)"), last
    assert "python analyze.py serve" in last[2] and "/run?path=" in last[2], last


@pytest.mark.slow
def test_start_page_lists_runs_sweeps_and_broken_runs(client, roots):
    outputs, multirun, run, _ = roots
    listing = client.get("/api/runs").json()
    by_path = {r["path"]: r for r in listing["runs"]}
    good, half = by_path[str(run)], by_path[str(outputs / "2026-01-01" / "11-00-00_half")]
    assert (good["task"], good["model"], good["data"], good["problem"]) == ("lm", "transformer_2l", "code", None)
    assert good["metrics"]["val/loss"] > 0 and any(f.endswith("block_0_grid.png") for f in good["figures"])
    assert "half-written" in half["problem"]
    [sweep] = listing["sweeps"]
    assert sweep["reports"] == [str(multirun / "2026-01-02" / "09-00-00_sweep" / "comparison.html")]
    assert "still training" in sweep["jobs"][0]["problem"]
    html = client.get("/").text
    assert str(run) in html and "half-written" in html and "comparison.html" in html
    assert client.get("/run", params={"path": half["path"]}).status_code == 409
    assert client.get("/run", params={"path": str(outputs / "gone")}).status_code == 404


@pytest.mark.slow
def test_prompt_endpoints_give_attention_pca_and_topk(client, roots):
    run = roots[2]
    r = client.get("/api/prompt", params={"path": str(run), "prompt": PROMPT, "layer": 1, "head": 3, "k": 4})
    assert r.status_code == 200, r.text
    views = r.json()
    tokens = expected_tokens(run)
    n = len(tokens)
    assert views["tokens"] == tokens and views["notice"] is None
    attention = views["attention"]["data"]
    assert (attention["layer"], attention["head"]) == (1, 3)
    assert len(attention["weights"]) == n and all(abs(sum(row) - 1) < 1e-4 for row in attention["weights"])
    assert [s["hook"] for s in views["pca"]["data"]["stages"]] == [
        "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert all(len(s["xy"]) == n and len(s["background"]) > 0 for s in views["pca"]["data"]["stages"])
    topk = views["topk"]["data"]
    assert [row["input"] for row in topk] == tokens and all(len(row["top"]) == 4 for row in topk)
    assert topk[0]["actual_next"] == tokens[1] and topk[-1]["actual_next"] is None
    assert "no SAE" in views["sae_features"]["reason"] and "LSTM" in views["lstm"]["reason"]
    html = client.get("/run", params={"path": str(run), "prompt": PROMPT}).text
    assert 'id="attention"' in html and 'class="topk"' in html and "plotly.min.js" in html


@pytest.mark.slow
def test_bad_input_is_shown_not_crashed(client, roots):
    outputs, _, run, _ = roots
    long = client.get("/api/prompt", params={"path": str(run), "prompt": "x = 1\n" * 300}).json()
    assert len(long["tokens"]) == 256 and "only the first 256" in long["notice"]
    bad_head = client.get("/api/prompt", params={"path": str(run), "prompt": "a", "head": 9})
    assert bad_head.status_code == 400
    assert bad_head.json()["error"] == ("head must be an integer from 0 to 3 (this model has 4 heads per layer); "
                                        "got '9'.")
    assert "empty" in client.get("/api/prompt", params={"path": str(run), "prompt": ""}).json()["error"]
    assert "arithmetic MLP" in client.get("/api/row", params={"path": str(run), "inputs": "1 2"}).json()["error"]
    for path in ("/etc", str(outputs / ".." / ".."), str(run / ".." / ".." / ".." / "x")):
        assert client.get("/run", params={"path": path}).status_code == 403
    assert client.get("/file", params={"path": str(outputs / ".." / "x")}).status_code == 403
    png = client.get("/file", params={"path": str(run / "figures" / "attention_grid" / "block_0_grid.png")})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and "plotly" in js.text[:2000].lower()


@pytest.mark.slow
def test_hostile_parameters_on_a_trained_run_are_escaped_or_refused(client, roots):
    """The values of test_explorer_security, now reaching the model: layer, head and k say what they take
    (400), a hostile prompt is shown as text, in the form and as tokens, and runs no script."""
    from test_explorer_security import LONG, PAYLOADS, assert_answered

    run = str(roots[2])
    layer = client.get("/run", params={"path": run, "prompt": "a", "layer": "abc"})
    assert_answered(layer, status=400)
    assert "layer must be an integer from 0 to 1 (this model has 2 layers); got &#39;abc&#39;." in layer.text
    assert 'name="prompt"' in layer.text   # the form is still there, to fix the value
    for name, says in (("layer", "from 0 to 1"), ("head", "from 0 to 3"), ("k", "from 1 to 50")):
        for value in (*PAYLOADS, "\0", "-1", "1e9", "9" * 5000, LONG[:5000], "2" if name == "layer" else "51"):
            params = {"path": run, "prompt": "a", name: value}
            for r in (client.get("/run", params=params), client.post("/run", data=params),
                      client.post("/api/prompt", json=params)):
                assert_answered(r, [value], 400)
                assert f"{name} must be an integer {says}" in r.text, (name, value[:50], r.text[-300:])
    for route in ("/run", "/api/row"):
        r = client.post(route, data={"path": run, "inputs": PAYLOADS[0]})
        assert_answered(r, PAYLOADS, 400)
        assert "arithmetic MLP" in r.text
    prompt = " ".join(PAYLOADS) + "\0 end"
    for r in (client.get("/run", params={"path": run, "prompt": prompt}),
              client.post("/run", data={"path": run, "prompt": prompt, "layer": "1", "head": "2", "k": "3"})):
        assert_answered(r, PAYLOADS + [prompt], 200)
        assert 'id="attention"' in r.text and "&lt;/textarea&gt;&lt;script&gt;" in r.text
    views = client.post("/api/prompt", json={"path": run, "prompt": prompt, "layer": 1, "head": 2, "k": 3})
    assert views.status_code == 200 and "".join(views.json()["tokens"]).endswith(prompt)


@pytest.mark.slow
def test_checkpoint_linked_from_outside_the_roots_is_refused(roots, tmp_path):
    """A copy of the trained run whose checkpoints/last.ckpt is a symlink to a (valid) checkpoint outside
    the outputs folders: refused (403) before torch.load; linked to one inside, it loads."""
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app
    from interp.explorer.listing import SAE_DIR, Refused
    from interp.explorer.views import Models
    from interp.sae.task import SAE_DIR as LOADED

    assert SAE_DIR == LOADED   # the explorer checks the folder an SAE run is loaded from

    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    linked = outputs / "2026-01-03" / "10-00-00_linked"
    shutil.copytree(roots[2], linked, ignore=shutil.ignore_patterns("figures", "wandb"))
    elsewhere.mkdir()
    (linked / "checkpoints" / "last.ckpt").rename(elsewhere / "last.ckpt")
    (linked / "checkpoints" / "last.ckpt").symlink_to(elsewhere / "last.ckpt")
    client = TestClient(create_app([outputs]))
    for r in (client.get("/run", params={"path": str(linked), "prompt": "a"}),
              client.post("/api/prompt", json={"path": str(linked), "prompt": "a"})):
        assert r.status_code == 403 and f"is a link to {elsewhere / 'last.ckpt'}, outside the outputs" in r.text
    assert "outside the outputs folders" in client.get("/api/runs").json()["runs"][0]["problem"]
    with pytest.raises(Refused, match="outside the outputs folders"):
        Models(roots=[outputs]).get(linked)
    shutil.move(elsewhere / "last.ckpt", linked / "checkpoints" / "best.ckpt")   # now a link inside the run
    (linked / "checkpoints" / "last.ckpt").unlink()
    (linked / "checkpoints" / "last.ckpt").symlink_to(linked / "checkpoints" / "best.ckpt")
    assert client.post("/api/prompt", data={"path": str(linked), "prompt": "a"}).status_code == 200


@pytest.mark.slow
def test_static_index_links_files_relatively(roots, tmp_path):
    from interp.explorer.cli import write_index

    outputs, multirun, _, _ = roots
    index = write_index(tmp_path / "index.html", [outputs, multirun])
    html = index.read_text()
    links = re.findall(r'href="([^"#]+)"', html)
    assert any(link.endswith("block_0_grid.png") for link in links) and "/run?" not in html
    assert all((index.parent / link).is_file() for link in links), links


def loaded_saes(run: Path):
    from interp.runs import load_run

    loaded = load_run(run)
    return loaded, loaded.saes


@pytest.mark.slow
def test_feature_list_and_pages_are_built_on_demand_cached_in_the_run_and_reread(client, roots, sae_run):
    from interp.explorer.app import create_app
    from interp.sae.harvest import feature_acts
    from starlette.testclient import TestClient

    assert not (sae_run / "explorer").exists()   # no precomputed dashboard or cache
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    listing = client.get("/api/features", params={"path": str(sae_run), "dict": names[1]}).json()
    rows = listing["rows"]
    assert listing["label"] == names[1] and listing["d_sae"] == len(listing["densities"]) > len(rows) > 0
    assert [r["max"] for r in rows] == sorted((r["max"] for r in rows), reverse=True)   # sort=max, the default
    assert listing["dead"] == sum(d == 0 for d in listing["densities"]) and listing["build_s"] > 0
    assert list((sae_run / "explorer").glob("*.pt")), "the statistics are kept in the run"
    by_density = client.get("/api/features", params={"path": str(sae_run), "dict": names[1], "sort": "density",
                                                     "n": 5}).json()["rows"]
    assert len(by_density) == 5 and by_density[0]["density"] == max(listing["densities"])
    html = client.get("/features", params={"path": str(sae_run)}).text   # the first dictionary by default
    assert f'<option selected>{names[0]}</option>' in html and 'class="sortable"' in html

    top = rows[0]
    page = client.get("/api/feature", params={"path": str(sae_run), "dict": names[1], "feature": top["feature"]}).json()
    assert page["page"]["max"] == pytest.approx(top["max"]) and page["page"]["cached"] is False
    assert page["page"]["top"][0]["value"] == pytest.approx(top["max"], rel=1e-3)
    assert "loss_delta" in page["page"] and len(page["page"]["hist"]) == len(page["page"]["hist_edges"]) - 1
    # independently: the feature's activation on the strongest context's own tokens, at the outlined token
    loaded, saes = loaded_saes(sae_run)
    ctx = page["page"]["top"][0]
    tokens = torch.tensor([ctx["ids"]])
    acts = feature_acts(loaded.model, saes[names[1]], tokens)[0, :, top["feature"]]
    assert acts.max().item() > 0 and (ctx["acts"][ctx["at"]] > 0)
    again = client.get("/feature", params={"path": str(sae_run), "dict": names[1], "feature": top["feature"]})
    assert again.status_code == 200 and "from the cache" in again.text and 'class="ctx"' in again.text
    # the run's feature study (the `features` analysis) joins the list; a fresh explorer (a restart) reads
    # the statistics from the run instead of building them again
    from interp.analyses import features
    from interp.targets import subject_of

    study_dir = sae_run / "figures" / "features" / names[1]
    features.run(loaded.model, subject_of(loaded).datamodule, study_dir, sae=saes[names[1]], per_category=8)
    study = __import__("json").loads((study_dir / "features.json").read_text())
    fresh = TestClient(create_app([roots[0], roots[1]]))
    again = fresh.get("/api/features", params={"path": str(sae_run), "dict": names[1], "sort": "specialist"}).json()
    assert again["build_s"] == 0 and again["has_specialist"]
    best = {s["feature"] for s in study["specialists"].values()}
    assert again["rows"][0]["feature"] in best and again["rows"][0]["specialist"]
    assert [s["category"] for s in again["study"]["specialists"]] == list(study["specialists"])
    assert 'id="specialists"' in fresh.get("/features", params={"path": str(sae_run), "dict": names[1]}).text
    for params, says in (({"dict": "nope", "feature": 1}, "no dictionary 'nope'; it has " + ", ".join(names)),
                         ({"dict": names[0], "feature": 10 ** 6}, "out of range"),
                         ({"dict": names[0]}, "no feature given"), ({"dict": names[0], "feature": "x"}, "integer")):
        r = client.get("/api/feature", params={"path": str(sae_run), **params})
        assert r.status_code == 400 and says in r.json()["error"], (params, r.text)
    assert "sort=" in client.get("/features", params={"path": str(sae_run), "sort": "<b>"}).text


@pytest.mark.slow
def test_search_by_text_shows_every_dictionary_and_matches_their_encoders(client, roots, sae_run):
    from interp.sae.harvest import feature_acts

    r = client.get("/api/search", params={"path": str(sae_run), "prompt": PROMPT, "top": 2})
    assert r.status_code == 200, r.text
    found = r.json()
    loaded, saes = loaded_saes(sae_run)
    tokens = torch.tensor([[loaded.tokenizer.eot_id] + loaded.tokenizer.encode(PROMPT)])
    assert found["labels"] == list(saes) and found["tokens"] == expected_tokens(roots[2])
    for name, sae in saes.items():   # each dictionary's own encoder, one at a time
        acts = feature_acts(loaded.model, sae, tokens)[0]
        for cell, row in zip(found["features"][name], acts):
            want = [f for f in row.topk(2).indices.tolist() if row[f] > 0]
            assert [f["feature"] for f in cell["features"]] == want and cell["n_active"] == int((row > 0).sum())
    html = client.get("/search", params={"path": str(sae_run), "prompt": "<b>x</b>"}).text
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html and "/feature?path=" in html
    assert "empty" in client.get("/api/search", params={"path": str(sae_run), "prompt": ""}).json()["error"]


@pytest.mark.slow
def test_steering_playground_is_the_steer_analysis_and_ablation_moves_what_fires(client, sae_run, tmp_path):
    from interp.analyses import steer
    from interp.targets import subject_of

    name = "blocks.1.hook_resid_post"
    top = client.get("/api/features", params={"path": str(sae_run), "dict": name}).json()["rows"][0]["feature"]
    params = {"path": str(sae_run), "dict": name, "feature": str(top), "scale": "30", "prompt": PROMPT, "tokens": "8"}
    got = client.get("/api/steer", params=params).json()
    loaded, saes = loaded_saes(sae_run)
    subject = subject_of(loaded)
    steer.run(loaded.model, subject.datamodule, tmp_path, sae=saes[name], feature=top, scale=30.0, prompt=PROMPT,
              max_new_tokens=8)
    want = __import__("json").loads((tmp_path / "steer.json").read_text())
    assert (got["without"], got["with"]) == (want["without"], want["with"])
    fires = max(got["acts"][0]) > 0
    assert (got["ablation"]["kl"] > 0) == fires and len(got["ablation"]["up"]) == 10
    two = client.get("/api/steer", params={**params, "feature": f"{top}, {top + 1}"}).json()
    assert two["features"] == [top, top + 1] and len(two["acts"]) == 2
    for value, says in (("x", "not a feature index"), ("", "no feature given"), ("99999", "not a feature index")):
        r = client.get("/api/steer", params={**params, "feature": value})
        assert r.status_code == 400 and says in r.json()["error"]
    r = client.get("/steer", params={**params, "scale": "nan"})
    assert r.status_code == 400 and "scale must be a number" in r.text
    assert client.get("/steer", params={"path": str(sae_run)}).status_code == 200   # the empty form


@pytest.mark.slow
def test_sweep_page_lists_jobs_and_opens_two_runs_side_by_side(client, roots):
    outputs, multirun, run, _ = roots
    sweep = multirun / "2026-01-02" / "09-00-00_sweep"
    page = client.get("/sweep", params={"path": str(sweep)})
    assert page.status_code == 200 and 'src="/file?path=' in page.text and "comparison.html" in page.text
    assert client.get("/", params={}).text.count('href="/sweep?path=') == 1
    assert client.get("/sweep", params={"path": str(outputs)}).status_code == 404
    pair = client.get("/compare", params={"a": str(run), "b": str(run), "prompt": "<i>hi</i>"})
    assert pair.status_code == 200 and pair.text.count("<iframe") == 2 and "embed=1" in pair.text
    assert "<i>hi</i>" not in pair.text
    embedded = client.get("/run", params={"path": str(run), "prompt": "hi", "embed": "1"}).text
    assert 'class="bar"' not in embedded and 'id="attention"' in embedded


def test_views_fit_lstm_kgram_and_arithmetic_models(tmp_path):
    """Untrained models of each kind through the same views (no training needed to check the wiring)."""
    from interp.data.tokenizer import Tokenizer
    from interp.explorer.views import Loaded, prompt_views, row_views
    from interp.models import build_model
    from interp.run_dir import LoadedRun

    def loaded(model_cfg, tokenizer):
        run = LoadedRun(tmp_path, {}, build_model(model_cfg).eval(), tokenizer, tmp_path / "x.ckpt", 0)
        return Loaded(tmp_path, run, bases={}, basis_note="axes fitted on the prompt")

    tok = Tokenizer(512)
    lstm = prompt_views(loaded({"arch": "lstm", "d_vocab": 512, "d_embed": 8, "d_hidden": 16, "n_layers": 2,
                                "dropout": 0.0}, tok), PROMPT)
    n = len(lstm["tokens"])
    layers = lstm["lstm"]["data"]   # per layer [neuron, position]
    assert len(layers) == 2 and len(layers[0]) == 16 and len(layers[0][0]) == n
    assert "attention heads" in lstm["attention"]["reason"] and len(lstm["pca"]["data"]["stages"]) == 3
    long = prompt_views(loaded({"arch": "lstm", "d_vocab": 512, "d_embed": 8, "d_hidden": 16, "n_layers": 1,
                                "dropout": 0.0}, tok), "x = 1; " * 1000)   # no context: cut for the page's sake
    assert len(long["tokens"]) == 1024 and "shows at most 1024 (this model takes any length)" in long["notice"]
    kgram = prompt_views(loaded({"arch": "kgram", "d_vocab": 512, "k": 3, "d_embed": 8, "d_hidden": 16}, tok), PROMPT)
    share = kgram["kgram"]["data"]["share"]
    assert kgram["kgram"]["data"]["slots"] == ["t-2", "t-1", "t-0"] and len(share[0]) == n
    assert all(abs(sum(col) - 1) < 1e-4 for col in zip(*share))
    # A pretrained SAE (SAELens folder) given to the explorer, on the LSTM's last layer: each feature
    # links to its page under the dictionary's label (its hook).
    from sae_lens import StandardSAE, StandardSAEConfig

    from interp.explorer.views import Models

    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=64))
    sae.cfg.metadata.hook_name = "blocks.1.hook_hidden"
    sae.save_model(tmp_path / "sae_run" / "sae")
    models = Models(sae={"path": str(tmp_path / "sae_run" / "sae")})
    with_sae = models.with_sae(loaded({"arch": "lstm", "d_vocab": 512, "d_embed": 8, "d_hidden": 16, "n_layers": 2,
                                       "dropout": 0.0}, tok))
    assert with_sae.run.sae.cfg.d_sae == 64
    features = prompt_views(with_sae, PROMPT)["sae_features"]["data"]
    assert features["hook"] == "blocks.1.hook_hidden" and features["label"] == "blocks.1.hook_hidden"
    assert len(features["tokens"]) == n and any(row["features"] for row in features["tokens"])
    misfit = models.with_sae(loaded({"arch": "kgram", "d_vocab": 512, "k": 3, "d_embed": 8, "d_hidden": 16}, tok))
    assert "does not fit this model" in prompt_views(misfit, PROMPT)["sae_features"]["reason"]

    mlp = loaded({"arch": "arithmetic_mlp", "n_values": 4, "d_hidden": [32, 8]}, None)
    row = row_views(mlp, "3 1 4 1 2 5 9 2 6 0")   # col1[2] = 4, col2[0] = 5
    assert row["answer"] == 1 and len(row["hidden"]["blocks.0.hook_post"]) == 32
    assert "needs an SAE" in row["probe"]["reason"]
    with pytest.raises(Exception, match="points beyond its column"):
        row_views(mlp, "3 1 4 1 9 5 9 2 6 0")   # pointer 9 is out of range
    # With an SAE on its hidden layer: seed S4's feature probe, as the feature_probe analysis computes it.
    from interp.analyses import alignment, feature_probe
    from interp.data import build_datamodule

    mlp.run.config = {"seed": 0, "data": {"name": "arithmetic", "num_train": 64, "num_val": 16, "num_test": 512,
                                          "batch_size": 16}}
    mlp.run.sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=48))
    mlp.run.sae.cfg.metadata.hook_name = "blocks.0.hook_post"
    probe = row_views(mlp, "3,1,4,1,2,5,9,2,6,0")["probe"]["data"]
    dm = build_datamodule(mlp.run.config["data"], seed=0)
    dm.setup("validate")
    test_x = torch.as_tensor(dm.test_ds.arrays["x"])
    labels = alignment.score(alignment.feature_activations(mlp.run.model, mlp.run.sae, test_x),
                             alignment.task_variables(test_x)).unit_labels()
    direct = feature_probe.probe(mlp.run.model, mlp.run.sae, torch.tensor([[3, 1, 4, 1, 2, 5, 9, 2, 6, 0]]), labels, 5)
    assert probe["top_features"] == direct["top_features"] and probe["expected"] == 1.0
    assert probe["report"].startswith("--- Interpretability Report ---")


def browser_or_skip():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); the HTTP tests above cover the endpoints")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]'); the HTTP tests cover the endpoints")
    return sync_playwright


def open_page(playwright):
    """(browser, page, refused): Debian's Chromium, a page whose waits allow slow shared CPUs (the first
    prompt fits the PCA basis), and the Content-Security-Policy refusals it logs (the explorer's pages must
    work under their own policy: a test asserts the list stays empty)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.set_default_timeout(300_000)
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return browser, page, refused


@contextlib.contextmanager
def explorer(env: dict, *roots: Path):
    """`analyze.py serve` on a free port over `roots`, as a user starts it: yields its URL."""
    args = [sys.executable, str(REPO / "analyze.py"), "serve", "--port", "0"]
    server = subprocess.Popen(args + [a for r in roots for a in ("--root", str(r))], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        yield re.search(r"http://\S+/", server.stdout.readline()).group(0)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:   # still answering a request
            server.kill()
            server.wait()


def prompt_in_the_browser(page, refused, url, run, shots):
    """The start page lists the runs; a run's prompt form renders attention, PCA and top-k; a 100 kB prompt
    is POSTed and cut to the context."""
    from interp.data.tokenizer import visible

    shown = [visible(t) for t in expected_tokens(run)]   # '·' for spaces, '\\n' for newlines
    page.goto(url)
    assert page.locator("tr.run").count() == 4   # the run, its SAE run, the half-written one, the sweep's job
    page.screenshot(path=shots / "start.png", full_page=True)
    page.click(f"a:text('{run}')")
    page.fill("textarea[name=prompt]", PROMPT)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_selector("#pca .main-svg")
    with page.expect_navigation():
        page.select_option("select[name=layer]", "1")   # submits the form: layer 1's heads
    page.wait_for_selector("#attention .main-svg")
    assert page.locator("#attention .gtitle").first.text_content() == "layer 1 head 0"
    ticks = page.locator("#attention .xtick text").all_text_contents()
    assert ticks == shown and "·return" in shown
    labels = page.locator("#pca .textpoint text").all_text_contents()
    assert labels == shown * 3   # one path per stage
    rows = page.locator("table.topk tr").all_inner_texts()
    assert [row.split("\t")[1] for row in rows[1:]] == shown
    page.screenshot(path=shots / "prompt.png", full_page=True)
    # A 100 kB prompt: POSTed (a GET URL that long is dropped by the server), cut to the context.
    long = "x = 1; " * 15_000   # one line: Playwright fills a textarea line by line, slowly
    page.fill("textarea[name=prompt]", long)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "only the first 256 are shown" in page.locator("p.notice").text_content()
    assert page.input_value("textarea[name=prompt]") == long and "prompt" not in page.url
    assert page.locator("#pca .main-svg").count() > 0 and refused == [], refused
    assert (shots / "prompt.png").stat().st_size > 10_000


# Every control a page shows has a name a screen reader can say: a <label> around it or pointing at it, or
# aria-label; every button has text; every image has alt text (the checks axe's "label", "button-name" and
# "image-alt" rules make). Plotly's own toolbar inside a figure (titled icons) is not ours to label.
UNLABELLED = """() => {
  const bad = [];
  const ours = (el) => !el.closest(".js-plotly-plot");
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (ours(el) && !(el.labels && el.labels.length) && !el.getAttribute("aria-label")) bad.push(el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll("button")) if (ours(el) && !el.textContent.trim()) bad.push(el.outerHTML.slice(0, 80));
  for (const el of document.querySelectorAll("img")) if (!el.getAttribute("alt")) bad.push(el.outerHTML.slice(0, 80));
  return bad;
}"""


@pytest.mark.slow
def test_browser_prompt_and_workbench_pages_work_are_labelled_and_read_without_javascript(roots, sae_run, train_env):
    """Every page type in Chromium (one server, one browser): the start page and a prompt's views; the feature
    list sorts on a click, a feature opens from search, steering shows both continuations; each page's
    controls are labelled, and each reads with JavaScript off."""
    from urllib.parse import urlencode

    sync_playwright = browser_or_skip()
    outputs, multirun, run, _ = roots
    shots = Path(os.environ.get("INTERP_TEST_ARTIFACTS", REPO / "test-artifacts")) / "explorer"
    shots.mkdir(parents=True, exist_ok=True)
    name = "blocks.1.hook_resid_post"
    sweep = multirun / "2026-01-02" / "09-00-00_sweep"
    with explorer(train_env, outputs, multirun) as url, sync_playwright() as p:
        browser, page, refused = open_page(p)
        prompt_in_the_browser(page, refused, url, run, shots)
        page.goto(f"{url}run?{urlencode({'path': sae_run})}")
        with page.expect_navigation():
            page.click("#tab-features")
        with page.expect_navigation():   # the menu submits the form: the URL says which dictionary
            page.select_option("select[name=dict]", name)
        assert f"dict={name}" in page.url
        density = page.locator("#features thead th").nth(1).locator("button")
        density.click()   # sorted in the page, by the number behind each cell
        values = [float(v) for v in page.locator("#features tbody tr td:nth-child(2)").evaluate_all(
            "cells => cells.map(c => c.dataset.value)")]
        assert values == sorted(values, reverse=True) and len(values) > 3
        page.screenshot(path=shots / "features.png", full_page=False)
        page.goto(f"{url}search?{urlencode({'path': sae_run, 'prompt': PROMPT})}")
        assert page.locator("#search thead th").count() == 2 + 2   # pos, token, one column per dictionary
        page.screenshot(path=shots / "search.png", full_page=False)
        with page.expect_navigation():
            page.locator("#search a.feat").first.click()
        assert "/feature?" in page.url and page.locator("#top .ctx").count() > 0
        page.screenshot(path=shots / "feature.png", full_page=False)
        back = page.url
        page.go_back()
        assert "/search?" in page.url and page.input_value("textarea[name=prompt]") == PROMPT
        page.goto(back)
        with page.expect_navigation():
            page.click("text=steer with it")
        page.fill("textarea[name=prompt]", PROMPT)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.locator("#without").text_content().startswith(PROMPT) and page.locator("#ablation table").count() == 2
        page.screenshot(path=shots / "steer.png", full_page=False)
        page.goto(f"{url}sweep?{urlencode({'path': sweep})}")
        page.screenshot(path=shots / "sweep.png", full_page=False)
        for route in ("", f"run?{urlencode({'path': run, 'prompt': PROMPT})}", f"features?{urlencode({'path': sae_run})}",
                      back.split("/", 3)[-1], f"search?{urlencode({'path': sae_run, 'prompt': PROMPT})}",
                      f"steer?{urlencode({'path': sae_run, 'dict': name, 'feature': 1, 'prompt': 'a'})}",
                      f"sweep?{urlencode({'path': sweep})}", f"graph?{urlencode({'path': sae_run})}"):
            page.goto(url + route)
            assert page.evaluate(UNLABELLED) == [], route
        assert refused == [], refused
        # With JavaScript off every page still reads: tables, contexts and links are in the HTML itself.
        plain = browser.new_context(java_script_enabled=False).new_page()
        plain.goto(back)
        assert plain.locator("#top .ctx").count() > 0 and plain.locator("#stats tr").count() >= 3
        plain.goto(f"{url}features?{urlencode({'path': sae_run})}")
        assert plain.locator("#features tbody tr").count() > 3
        plain.goto(f"{url}search?{urlencode({'path': sae_run, 'prompt': PROMPT})}")
        assert plain.locator("#search a.feat").count() > 0
        plain.goto(f"{url}steer?{urlencode({'path': sae_run, 'dict': name, 'feature': 1, 'prompt': PROMPT})}")
        assert plain.locator("#with").text_content().startswith(PROMPT)
        plain.goto(url)
        assert plain.locator("tr.run").count() == 4 and plain.locator("h2.sweep a").count() == 1
        browser.close()
