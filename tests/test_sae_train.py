"""End to end: `python train.py task=sae base_run=<run> sae=<arch>` on tiny base runs of every
model family, the SAELens round trip, the shared cache in a sweep, and bad input."""

import json
import subprocess
import sys

import pytest
from conftest import FAST_BY_DATA, REPO, SAE_FAST_COMMON
from sae_lens import SAE

from interp.data import build_datamodule
from interp.runs import load_run
from interp.runs.wandb_offline import history_keys, offline_runs, run_info
from interp.sae.metrics import EvalAccumulator
from interp.sae.source import FirstBatches
from interp.sae.task import evaluate_batch

pytestmark = pytest.mark.slow

BASES = {  # name -> (train.py overrides, a hook of that model)
    "transformer": (["model=transformer_1l", "data=code", *FAST_BY_DATA["code"]], "blocks.0.hook_resid_post"),
    "lstm": (["model=lstm", "data=code", *FAST_BY_DATA["code"]], "blocks.0.hook_hidden"),
    "kgram": (["model=kgram", "data=code", *FAST_BY_DATA["code"]], "blocks.0.hook_post"),
    "arithmetic": (["experiment=arithmetic_mlp", *FAST_BY_DATA["arithmetic"]], "blocks.0.hook_post"),
}
SAE_FAST = SAE_FAST_COMMON


@pytest.fixture(scope="session")
def base_runs(run_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    built = {}

    def get(name: str):
        if name not in built:
            run_train(*BASES[name][0], run_dir=root / name)
            built[name] = root / name
        return built[name]
    return get


def sae_metrics_again(run_dir):
    """Metrics of the saved SAE (loaded by SAELens itself) on the run's evaluation batches."""
    run = load_run(run_dir)
    assert isinstance(run.sae, SAE)
    dm = build_datamodule(run.config["data"], seed=run.config["base"]["seed"])
    dm.setup("validate")
    acc = EvalAccumulator(run.sae.cfg.d_sae, run.config["sae"]["dense_threshold"])
    for batch in FirstBatches(dm.val_dataloader(), run.config["sae"]["eval_batches"]):
        evaluate_batch(run.sae, run.model, run.config["sae"]["hook"], batch, acc)
    return acc.compute()


@pytest.mark.parametrize("arch,base", [("standard", "transformer"), ("topk", "lstm"), ("batchtopk", "kgram"),
                                       ("jumprelu", "arithmetic"), ("gated", "transformer")])
def test_each_sae_trains_on_each_model_family_and_round_trips_through_saelens(arch, base, base_runs, run_train,
                                                                               tmp_path):
    base_dir, hook = base_runs(base), BASES[base][1]
    run_train(*SAE_FAST, f"base_run={base_dir}", f"sae={arch}", f"sae.hook={hook}", run_dir=tmp_path / "sae")
    metrics = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    config = (tmp_path / "sae" / "config.yaml").read_text()
    assert f"run: {base_dir}" in config and "checkpoint_sha256:" in config   # the base is recorded
    assert (tmp_path / "sae" / "figures" / "sae" / "feature_density.png").stat().st_size > 0
    again = sae_metrics_again(tmp_path / "sae")
    downstream = "task_mse_with_sae" if base == "arithmetic" else "ce_loss_with_sae"
    for key in ("mse", "explained_variance", "l0", downstream):
        assert again[key] == pytest.approx(metrics[f"val/{key}"], rel=1e-4, abs=1e-6), key
    assert metrics["trainer/global_step"] == 6
    # where the time went: the cache harvested here, or by another test of the same base and hook, then verified
    assert metrics.get("time/harvest_s", 0) + metrics.get("time/cache_verify_s", 0) > 0 and metrics["time/save_s"] > 0


def test_the_default_experiments_lm_analyses_skip_an_sae_run(base_runs, run_train, tmp_path):
    # debug=fast would drop the default experiment's analyses: the same small run without it.
    no_debug = [o for o in SAE_FAST if o != "debug=fast"] + [
        "trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false", "data.batch_size=4"]
    proc = run_train(*no_debug, f"base_run={base_runs('transformer')}", "sae=topk", "sae.k=4",
                     f"sae.hook={BASES['transformer'][1]}", run_dir=tmp_path / "sae")
    for name in ("attention_grid", "induction", "ngram"):
        assert f"skipped {name}: it runs in task=lm runs; this is task=sae" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "sae" / "figures").iterdir()) == ["sae"]
    assert json.loads((tmp_path / "sae" / "metrics.json").read_text())["trainer/global_step"] == 6


def test_a_sweep_harvests_activations_once_and_logs_to_one_wandb_group(base_runs, run_train, tmp_path):
    base_dir = base_runs("transformer")
    run_train(*SAE_FAST, "logger=wandb", f"base_run={base_dir}", "sae=standard",
              f"sae.hook={BASES['transformer'][1]}", "sae.l1_coefficient=1,3", f"sae.cache.root={tmp_path / 'cache'}",
              run_dir=tmp_path / "sweep",
              multirun=True)
    jobs = [tmp_path / "sweep" / str(i) for i in range(2)]
    harvested = [json.loads((job / "metrics.json").read_text())["data/cache_harvested"] for job in jobs]
    assert harvested == [1, 0]
    runs = [offline_runs(job)[0] for job in jobs]
    assert run_info(runs[0])["group"] == run_info(runs[1])["group"] == "sweep"
    logged = history_keys(runs[0])
    assert {"train/l0", "val/explained_variance", "val/ce_loss_score", "val/dead_features"} <= logged
    assert "val/log10_feature_density/bins" in logged     # the feature-density histogram


@pytest.mark.parametrize("source, hooks", [("cache", [BASES["transformer"][1]]), ("stream", [BASES["transformer"][1]]),
                                           ("cache", ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"])])
def test_ddp_sae_run_counts_firing_over_every_rank_and_saves_one_sae(source, hooks, base_runs, run_train, tmp_path):
    """One dictionary, or two from one pass: each counts both ranks' rows and is saved once."""
    import torch

    run_dir = tmp_path / "ddp"
    run_train(*SAE_FAST, "trainer=ddp_cpu", f"base_run={base_runs('transformer')}", "sae=topk", "sae.k=4",
              f"sae.hook=[{','.join(hooks)}]" if len(hooks) > 1 else f"sae.hook={hooks[0]}", f"sae.source={source}",
              f"sae.cache.root={tmp_path / 'cache'}", run_dir=run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["trainer/global_step"] == 6
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    for i in range(len(hooks)):
        assert int(state[f"dictionaries.{i}.tracker.n_samples"]) == 2 * 128 * 6     # both ranks' batches, every step
    folders = [run_dir / "sae"] if len(hooks) == 1 else [run_dir / "saes" / hook for hook in hooks]
    for folder in folders:
        saved = SAE.load_from_disk(str(folder))
        assert saved.cfg.d_sae == 2 * saved.cfg.d_in
    if source == "cache":
        assert metrics["data/cache_harvested"] == 1 and len(list((tmp_path / "cache").glob("*/manifest.json"))) == 1
    assert not list(tmp_path.glob("*/*/metrics.json")), "rank 1 must not create a run dir of its own"


@pytest.mark.parametrize("norm,arch", [("expected_average_only_in", "standard"), ("covariance_whitening", "topk"),
                                       ("layer_norm", "standard")])
def test_normalized_activations_train_and_the_saved_sae_reads_raw_activations(norm, arch, base_runs, run_train,
                                                                             tmp_path):
    import numpy as np
    import torch

    run_dir = tmp_path / "sae"
    run_train(*SAE_FAST, f"base_run={base_runs('transformer')}", f"sae={arch}", *(["sae.k=4"] if arch == "topk" else []),
              f"sae.hook={BASES['transformer'][1]}", f"sae.normalize_activations={norm}",
              "sae.norm_estimate_batches=16", f"sae.cache.root={tmp_path / 'cache'}", run_dir=run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    saved = json.loads((run_dir / "sae" / "cfg.json").read_text())
    assert saved["normalize_activations"] == ("layer_norm" if norm == "layer_norm" else "none")   # folded
    again = sae_metrics_again(run_dir)   # the saved SAE, on raw activations, gives the logged metrics
    for key in ("mse", "explained_variance", "l0", "ce_loss_with_sae"):
        assert again[key] == pytest.approx(metrics[f"val/{key}"], rel=1e-4, abs=1e-6), key
    scaler = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                        weights_only=False)["activation_scalers"][0]
    if norm == "expected_average_only_in":   # 16 batches of 128 = the whole 2048-row cache, once
        rows = np.load(next((tmp_path / "cache").glob("*/acts.npy")))
        expected = rows.shape[1] ** 0.5 / np.linalg.norm(rows, axis=1).mean()
        assert scaler["scaling_factor"] == pytest.approx(expected, rel=1e-4)
    else:
        assert scaler["scaling_factor"] is None
    assert (scaler["whitening"] is not None) == (norm == "covariance_whitening")


@pytest.mark.parametrize("overrides,message", [
    (["sae.hook=blocks.7.hook_resid_post"], "Valid hooks: "),
    (["sae.hook=blocks.0.hook_resid_post", "sae.d_in=7"], "sae.d_in=7 but blocks.0.hook_resid_post"),
    (["sae.hook=blocks.0.hook_resid_post", "sae.l1_coefficient=nan"], "SAE loss became nan at step 0"),
])
def test_bad_sae_input_is_a_clear_error(overrides, message, base_runs, run_train, tmp_path):
    proc = run_train(*SAE_FAST, f"base_run={base_runs('transformer')}", *overrides, run_dir=tmp_path / "r",
                     expect_ok=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("base_run,message", [("does/not/exist", "does not exist"),
                                               ("conf", "is not an interp run directory")])
def test_a_base_run_that_is_not_a_run_is_a_clear_error(base_run, message, run_train, tmp_path):
    proc = run_train(*SAE_FAST, f"base_run={base_run}", "sae.hook=x", run_dir=tmp_path / "r", expect_ok=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def test_feature_dashboard_and_interventions_from_the_command_line(base_runs, run_train, train_env, tmp_path):
    run_train(*SAE_FAST, f"base_run={base_runs('transformer')}", "sae=topk", "sae.k=4",
              f"sae.hook={BASES['transformer'][1]}", run_dir=tmp_path / "sae")
    d_sae = load_run(tmp_path / "sae").sae.cfg.d_sae

    def analyze(*args):
        return subprocess.run([sys.executable, str(REPO / "analyze.py"), f"run={tmp_path / 'sae'}", *args], check=False,
                              cwd=REPO, env=train_env, capture_output=True, text=True, timeout=300)

    proc = analyze("analysis=[dashboard,steer,attribute]", "n_features=3", "max_tokens=2000", "feature=1", "scale=4",
                   "prompt=def f(x):", "answer=return", "max_new_tokens=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = tmp_path / "sae" / "figures"
    pages = json.loads((figures / "dashboard" / "dashboard.json").read_text())
    assert len(pages) == 3 and all((figures / "dashboard" / f"feature_{p['feature']}.html").exists() for p in pages)
    assert "with:" in proc.stdout and (figures / "steer" / "steer.md").exists()
    assert json.loads((figures / "attribute" / "results.json").read_text())["decomposition_residual"] < 1e-3
    proc = analyze("analysis=steer", f"feature={d_sae}")
    assert proc.returncode == 2 and f"this SAE has {d_sae} features" in proc.stderr and "Fix:" in proc.stderr
