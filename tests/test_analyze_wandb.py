"""analyze.py on a saved run sends its figures to W&B: a run of job type "analyze" beside the training
run, in the same project and group, read back here from its offline records."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import FAST_BY_DATA, REPO

from interp.runs.history import curves
from interp.runs.wandb_offline import history, offline_runs, read_records, run_info


def analyze(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)


def test_feature_layers_logs_one_run_for_the_compared_saes(tmp_path):
    """The several-SAE comparison: one analyze run at the sweep's root, named after the sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from interp.analyze_wandb import Analysed, log_analyses
    from interp.analyze_wandb import comparison_target

    logger = {"wandb": {"_target_": "pytorch_lightning.loggers.WandbLogger", "project": "p", "offline": True,
                        "name": "sae-run", "group": None, "tags": ["t"]}}
    runs = [SimpleNamespace(run_dir=tmp_path / "sweep" / str(i), config={"logger": logger}) for i in range(2)]
    target = comparison_target(runs, tmp_path / "sweep")
    assert target.run_dir == tmp_path / "sweep" and target.config == {"runs": [str(r.run_dir) for r in runs]}
    assert target.identity["name"] == "sweep/feature_layers" and target.identity["project"] == "p"
    unlogged = [SimpleNamespace(run_dir=tmp_path / "csv", config={"logger": {"csv": {}}})]
    assert comparison_target(unlogged, tmp_path) is None

    out = tmp_path / "sweep" / "figures" / "feature_layers"
    out.mkdir(parents=True)
    plt.plot([0, 1]), plt.savefig(out / "specialist_scores.png"), plt.close()
    (out / "feature_layers.html").write_text("<p>page</p>")
    (out / "summary.json").write_text('{"saes": ["a", "b"]}\n')   # an analysis's data file: saved with the run
    folder = log_analyses(target, [Analysed("feature_layers", out, {}, started=0.0)])
    saved = folder / "files" / "feature_layers" / "summary.json"
    assert json.loads(saved.read_text()) == {"saes": ["a", "b"]}
    [record] = offline_runs(tmp_path / "sweep")
    assert record.parent == folder and run_info(record)["job_type"] == "analyze"
    [row] = history(record)
    assert row["figures/feature_layers/specialist_scores"]["_type"] == "image-file"
    assert row["figures/feature_layers/feature_layers"]["_type"] == "html-file"
    assert log_analyses(target, []) is None   # nothing ran: no run


def test_a_wandb_that_cannot_be_reached_is_a_warning_not_a_lost_analysis(tmp_path, train_env):
    """An online run analysed without network: the figures are written already, W&B says why it was left out.
    (In a fresh process: wandb keeps the settings of the first run a process starts.)"""
    code = (f"from pathlib import Path\n"
            f"from interp.analyze_wandb import Analysed, Target\n"
            f"from interp.analyzing import report_wandb\n"
            f"target = Target(Path({str(tmp_path)!r}), {{}}, 3, offline=False,\n"
            f"                identity={{'id': '', 'project': 'p', 'group': '', 'name': 'n', 'tags': []}})\n"
            f"report_wandb(target, [Analysed('x', target.run_dir / 'figures' / 'x', {{'a': 1.0}}, 0.0)])\n")
    env = dict(train_env, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_API_KEY="x" * 40, WANDB_INIT_TIMEOUT="3")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)   # 127.0.0.1:9: nothing listens there
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("W&B: not logged (") and f"the figures are in {tmp_path}/figures/" in proc.stdout


@pytest.fixture(scope="module")
def sweep_job(run_train, tmp_path_factory):
    """One job of a sweep (so its W&B run has a group), logging to W&B offline, no analyses of its own."""
    sweep = tmp_path_factory.mktemp("analyze_wandb") / "sweep"
    run_train("model=transformer_2l", "data=induction", *FAST_BY_DATA["induction"], "seed=0", run_dir=sweep,
              multirun=True)
    return sweep / "0"


def config_of(wandb_file) -> dict:
    return {item.key: json.loads(item.value_json) for r in read_records(wandb_file)
            if r.WhichOneof("record_type") == "run" for item in r.run.config.update}


@pytest.mark.slow
def test_analyses_of_a_saved_run_land_in_an_analyze_run_of_the_same_group(sweep_job, train_env):
    before = curves(sweep_job)
    proc = analyze(train_env, f"run={sweep_job}", "analysis=[induction,attention_html]")
    assert proc.returncode == 0, proc.stderr
    trained, analysed = offline_runs(sweep_job)
    train_info, info = run_info(trained), run_info(analysed)
    assert f"W&B: {analysed.parent}" in proc.stdout
    assert info["job_type"] == "analyze" and info["name"] == f"{train_info['name']}/analyze"
    assert (info["project"], info["group"]) == (train_info["project"], train_info["group"]) == ("interp", "sweep")
    config = config_of(analysed)
    assert config["analyzed_run"] == str(sweep_job) and config["analyzed_wandb_id"] == train_info["id"]
    assert config["model"]["arch"] == "transformer"   # the analysed run's config, for filtering sweeps

    [row] = history(analysed)
    assert row["trainer/global_step"] == row["_step"] == 6   # the checkpoint's step
    figures = sweep_job / "figures"
    pngs = {f"figures/induction/{p.stem}" for p in (figures / "induction").glob("*.png")}
    logged = {k for k in row if k.startswith("figures/")}
    assert pngs and logged == pngs | {"figures/induction/results", "figures/attention_html/attention"}
    results = json.loads((figures / "induction" / "results.json").read_text())
    assert {k: row[f"analysis/induction/{k}"] for k in results} == pytest.approx(results)
    media = analysed.parent / "files"
    html = (media / row["figures/attention_html/attention"]["path"]).read_text()
    assert html == (figures / "attention_html" / "attention.html").read_text()
    table = json.loads((media / row["figures/induction/results"]["path"]).read_text())
    assert {k: v for k, v in table["data"]} == pytest.approx(results)
    assert curves(sweep_job) == before   # training curves come from the training run alone


@pytest.mark.slow
def test_wandb_false_and_runs_without_wandb_log_nothing(sweep_job, run_train, train_env, tmp_path):
    count = len(offline_runs(sweep_job))
    proc = analyze(train_env, f"run={sweep_job}", "analysis=induction", "wandb=false")
    assert proc.returncode == 0, proc.stderr
    assert len(offline_runs(sweep_job)) == count and "W&B:" not in proc.stdout
    proc = analyze(train_env, f"run={sweep_job}", "hooks")   # nothing analysed: no run either
    assert proc.returncode == 0 and len(offline_runs(sweep_job)) == count
    proc = analyze(train_env, f"run={sweep_job}", "analysis=ngram")   # skipped: not text data
    assert proc.returncode == 0 and "skipped ngram: ngram compares against" in proc.stdout
    assert len(offline_runs(sweep_job)) == count

    csv_run = tmp_path / "csv_run"
    run_train("model=transformer_1l", "data=induction", *FAST_BY_DATA["induction"], "logger=csv", run_dir=csv_run)
    proc = analyze(train_env, f"run={csv_run}", "analysis=induction")
    assert proc.returncode == 0, proc.stderr
    assert not (csv_run / "wandb").exists() and "W&B:" not in proc.stdout
