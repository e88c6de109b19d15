"""data=synthetic: SAELens's synthetic benchmark (SynthSAEBench) as the data an SAE learns, scored against
its known features by SAELens's own eval_sae_on_synthetic_data."""

import json

import pytest
import torch
from conftest import REPO

from interp.errors import ConfigError

TINY = ["task=sae", "data=synthetic", "data.num_features=64", "data.hidden_dim=16", "data.num_train=8192",
        "data.num_val=1024", "data.num_test=1024", "data.eval_samples=2048", "data.batch_size=256", "sae=topk",
        "sae.k=4", "sae.d_sae=64", "sae.batch_size=256", "sae.harvest_tokens=4096", "sae.buffer_tokens=1024",
        "trainer.max_steps=60", "trainer.val_check_interval=30", "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false", "logger=csv"]


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)   # what ${hydra:...} in the config reads, as under train.py
    return cfg


def build(cfg, overrides=()):
    from interp.registry import task_kind

    return task_kind(cfg.task.name).build(cfg, {"overrides": list(overrides), "choices": {}})


def test_the_synthetic_data_and_model_give_the_same_rows_for_the_same_ids_and_disjoint_splits():
    from dataclasses import asdict

    from interp.data import build_datamodule
    from interp.data.synthetic import SyntheticConfig, model_config
    from interp.models import build_model

    data = {**asdict(SyntheticConfig()), "num_features": 64, "hidden_dim": 16, "num_train": 4096, "num_val": 512,
            "num_test": 512, "batch_size": 256}
    dm = build_datamodule(data, seed=0)
    dm.setup("fit")
    ids = [set(ds.arrays["x"].tolist()) for ds in (dm.train_ds, dm.val_ds, dm.test_ds)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    model, again = build_model(model_config(data)), build_model(model_config(data))
    batch = next(iter(dm.val_dataloader()))["x"]
    state = torch.random.get_rng_state()
    rows = model(batch)
    assert torch.equal(torch.random.get_rng_state(), state)   # the global RNG is left as it was
    assert rows.shape == (256, 16) and torch.equal(rows, again(batch)) and not torch.equal(rows, model(batch + 1))
    # the rows are SAELens's model's: its directions times its feature activations, plus its bias
    d = model.synthetic.feature_dict
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hidden, feats = model.synthetic.sample_with_features(512)
    assert torch.allclose(hidden, feats @ d.feature_vectors + d.bias, atol=1e-5)
    other = build_model(model_config({**data, "model_seed": 7}))
    assert not torch.equal(other.synthetic.feature_dict.feature_vectors, d.feature_vectors)


@pytest.mark.parametrize("overrides,says", [
    (["task=lm"], "no model to train on it (task=lm). Fix: task=sae data=synthetic"),
    (["data.hierarchy={total_root_nodes: 8, branching_factor: 4, max_depth: 3}"],
     "makes a tree of 168 features but data.num_features=64"),
    (["data.hierarchy={total_root_nodes: 0}"], "data.hierarchy: total_root_nodes must be positive"),
    (["data.min_firing_prob=0.5", "data.max_firing_prob=0.3"], "firing probabilities need"),
    (["data.mean_magnitude={name: wavy}"], "data.mean_magnitude="),
    (["sae.k=100"], "sae.k=100 but the synthetic model has 64 features"),
])
def test_bad_synthetic_settings_are_one_clear_error(overrides, says):
    cfg = compose(*TINY, *overrides)
    with pytest.raises(ConfigError) as e:
        build(cfg)
    assert says in str(e.value), str(e.value)


def test_choosing_a_model_or_base_run_for_synthetic_data_is_an_error():
    for chosen in ("model=gpt2", "base_run=outputs/x"):
        with pytest.raises(ConfigError, match="data=synthetic brings its own model"):
            build(compose(*TINY, chosen), [chosen])


def test_the_presets_compose_and_the_16k_setting_is_saelens_published_one():
    small, big = compose("experiment=synth_small"), compose("experiment=synth_16k")
    assert small.data.name == big.data.name == "synthetic" and small.task.name == "sae"
    assert (big.data.num_features, big.data.hidden_dim, big.sae.d_sae, big.sae.k, big.sae.batch_size) == \
        (16384, 768, 4096, 25, 1024)
    assert big.trainer.max_steps * big.sae.batch_size >= 200_000_000 and big.sae.architecture == "batchtopk"


@pytest.mark.slow
def test_an_sae_on_synthetic_data_is_scored_against_the_true_features(run_train, tmp_path):
    from sae_lens import SAE
    from sae_lens.synthetic import SyntheticModel, eval_sae_on_synthetic_data

    from interp.runs import load_run
    from interp.sae.task import SYNTHETIC_DIR

    run = tmp_path / "run"
    proc = run_train(*TINY, "data.num_val=2048", "trainer.limit_val_batches=8", run_dir=run)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("mcc", "f1", "precision", "recall", "uniqueness", "explained_variance", "true_l0"):
        assert f"val/synthetic/{key}" in metrics, (key, sorted(metrics))
    assert 0 <= metrics["val/synthetic/f1"] <= 1 and 0 < metrics["val/synthetic/mcc"] <= 1
    assert metrics["val/synthetic/sae_l0"] == pytest.approx(4, abs=0.5)   # TopK, k=4
    # two computations of explained variance on different rows (2,048 each) of the same model: ours on the
    # validation split, SAELens's on its eval rows; they differ by the rows' sampling noise only
    assert metrics["val/explained_variance"] == pytest.approx(metrics["val/synthetic/explained_variance"],
                                                              abs=0.02, rel=0.05)
    assert "ce_loss_score" not in json.dumps(metrics)   # no downstream model to splice into
    # the loop's rate counts the steps and the data they wait for; the step rate the steps alone
    assert 0 < metrics["throughput/rows_per_s_loop"] < metrics["throughput/rows_per_s"]
    assert metrics["time/train_step_s"] < metrics["time/train_loop_s"]
    # the run keeps SAELens's own files; SAELens's loaders read them, and score the saved SAE as the run did
    synthetic = SyntheticModel.load_from_disk(run / SYNTHETIC_DIR)
    loaded = load_run(run)
    assert torch.equal(synthetic.feature_dict.feature_vectors, loaded.model.synthetic.feature_dict.feature_vectors)
    sae = SAE.load_from_disk(str(run / "sae"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(42 + 1)   # the run's eval rows: data.model_seed + 1
        again = eval_sae_on_synthetic_data(sae, synthetic.feature_dict, synthetic.activation_generator,
                                           num_samples=2048, batch_size=256)
    assert again.mcc == pytest.approx(metrics["val/synthetic/mcc"], abs=1e-5)
    assert again.classification.f1_score == pytest.approx(metrics["val/synthetic/f1"], abs=1e-5)
    assert "val/synthetic/f1" in proc.stdout
    # the explorer: the run opens with no prompt box; its feature pages say why they need text
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    client = TestClient(create_app([tmp_path]))
    assert 'id="no-input"' in client.get("/run", params={"path": str(run)}).text
    features = client.get("/features", params={"path": str(run)})
    assert features.status_code == 400 and "data=synthetic" in features.text
