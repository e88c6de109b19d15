"""`sae.init`: the interp recipe (data-mean decoder bias, unit-norm decoder, width-aware learning rate) and
SAELens's exact behaviour, field by field, against independent computations and SAELens's own classes."""

import math

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

from interp.errors import ConfigError
from interp.sae.dictionary import Dictionary
from interp.sae.spec import build_training_sae, dead_window_steps, parse_spec
from interp.tasks.optim import build_optimizers

TOPK = {"architecture": "topk", "k": 4, "d_sae": 64, "hook": "h"}


def composed_sae(arch: str) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=["task=sae", f"sae={arch}", "sae.hook=h", "base_run=x"])
    sae = OmegaConf.to_container(cfg.sae, resolve=False)
    sae.pop("cache")   # its root interpolates Hydra's run paths
    return sae


def test_the_saelens_recipe_builds_saelens_own_sae_and_trains_as_its_trainer():
    spec, saelens = parse_spec({**TOPK, "init": "saelens"})
    torch.manual_seed(3)
    ours = build_training_sae(spec, 16, "h", saelens)
    torch.manual_seed(3)
    theirs = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=16, d_sae=64, k=4))   # SAELens's defaults
    for name, p in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], p), name
    d = Dictionary(spec, saelens, 16)
    assert d.learning_rate(None, 10) == d.learning_rate(None, 10_000) == 3e-4   # at any length
    assert d.tracker.dead_feature_window == 1000 and spec.lr_schedule == "constant"
    assert spec.b_dec_init == "zeros" and torch.count_nonzero(d.sae.b_dec) == 0


def test_the_interp_recipe_unit_norm_decoder_encoder_its_transpose_and_width_and_length_aware_lr():
    spec, saelens = parse_spec({**TOPK, "init": "interp"})
    d = Dictionary(spec, saelens, 16, seed=0)
    assert torch.allclose(d.sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-6)
    assert torch.equal(d.sae.W_enc, d.sae.W_dec.T)
    assert d.learning_rate(None, 244) == pytest.approx(1.6e-3 * math.sqrt(16384 / 64))
    assert d.learning_rate(None, 61) / d.learning_rate(None, 244) == pytest.approx(2.0)   # 1/sqrt(steps)
    assert d.learning_rate(1e-3, 61) == 1e-3   # optim.lr, when set, is every dictionary's at any length
    wide = Dictionary(*parse_spec({**TOPK, "init": "interp", "d_sae": 256}), 16)
    assert d.learning_rate(None, 244) / wide.learning_rate(None, 244) == pytest.approx(2.0)   # 1/sqrt(width)
    assert spec.lr_schedule == "linear"


def test_an_explicit_field_beats_the_recipe():
    spec, saelens = parse_spec({**TOPK, "init": "interp", "decoder_init_norm": 0.5, "b_dec_init": "zeros",
                                "lr_reference_width": 0, "lr_at_reference": 1e-4, "dead_feature_window": 7})
    assert saelens["decoder_init_norm"] == 0.5 and spec.b_dec_init == "zeros"
    assert Dictionary(spec, saelens, 16).learning_rate(None, 244) == pytest.approx(1e-4)
    assert dead_window_steps(spec) == 7


def test_b_dec_starts_at_the_mean_in_the_space_the_sae_trains_in():
    from sae_lens.training.activation_scaler import ActivationScaler

    spec, saelens = parse_spec({**TOPK, "init": "interp"})
    d = Dictionary(spec, saelens, 16, seed=0)
    d.scaler = ActivationScaler(scaling_factor=0.5)   # expected_average_only_in's statistics
    b_enc = d.sae.b_enc.clone()
    mean = torch.arange(16.0)
    d.init_b_dec(mean)
    assert torch.equal(d.sae.b_dec, mean * 0.5)
    assert torch.equal(d.sae.b_enc, b_enc)   # b_dec is subtracted from the input: the encoder is centred already


def test_a_transcoder_starts_at_its_targets_mean_with_centred_pre_activations():
    spec, saelens = parse_spec({**TOPK, "init": "interp", "hook": "a", "target_hook": "b",
                                "apply_b_dec_to_input": False})
    d = Dictionary(spec, saelens, 8, seed=0)
    x, y = torch.randn(400, 8) + 3, torch.randn(400, 8) - 2
    d.init_b_dec(torch.cat([x, y], 1).mean(0))
    assert torch.allclose(d.sae.b_dec, y.mean(0), atol=1e-5)
    pre = x.mean(0) @ d.sae.W_enc + d.sae.b_enc   # the mean input's pre-activations: zero, as sparsify starts them
    assert pre.abs().max() < 1e-4


def test_dead_features_counted_in_tokens_become_steps_of_the_batch_size():
    spec, _ = parse_spec({**TOPK, "batch_size": 4096, "dead_feature_tokens": 10_000_000})
    assert dead_window_steps(spec) == math.ceil(10_000_000 / 4096)


def test_topk_batchtopk_and_matryoshka_default_to_the_interp_recipe_the_rest_to_saelens():
    for arch in ("topk", "batchtopk", "matryoshka"):
        assert parse_spec(composed_sae(arch))[0].init == "interp", arch
    for arch in ("standard", "jumprelu", "gated"):
        spec, saelens = parse_spec(composed_sae(arch))
        assert (spec.init, spec.b_dec_init, saelens["decoder_init_norm"]) == ("saelens", "zeros", 0.1), arch


def test_one_optimiser_gives_each_dictionary_its_own_learning_rate():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in (1e-3, 5e-4)]
    opt = build_optimizers(groups, {"name": "Adam", "lr": None}, 10)["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-4]
    with pytest.raises(ConfigError, match="optim.lr is null"):
        build_optimizers([torch.nn.Parameter(torch.zeros(2))], {"name": "Adam", "lr": None}, 10)


def test_an_unknown_recipe_names_the_valid_ones():
    with pytest.raises(ConfigError, match="sae.init='sparsify' is not one of \\['saelens', 'interp'\\]"):
        parse_spec({**TOPK, "init": "sparsify"})


def rows_datamodule(batches):
    """Fixed activation batches, as the SAE task reads them (training batches and norm_batches)."""
    import pytorch_lightning as pl

    class Rows(pl.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(batches, batch_size=None)

        def norm_batches(self):
            return iter(batches)

    return Rows()


def fit(task, batches, steps, ckpt_path=None, root=None):
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         default_root_dir=root, enable_checkpointing=root is not None)
    task.on_fit_end = lambda: None   # no run directory to save the SAE into
    trainer.fit(task, datamodule=rows_datamodule(batches), ckpt_path=ckpt_path)
    return trainer


def test_a_fresh_run_starts_b_dec_at_the_data_mean_and_a_resumed_one_keeps_its_own(tmp_path):
    from interp.sae.task import SAETask

    spec = {**TOPK, "init": "interp", "norm_estimate_batches": 4}   # normalised: SAELens's scale, then the mean
    optim = {"name": "Adam", "lr": None, "schedule": "constant"}
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(32, 16, generator=g) + 4 for _ in range(4)]
    seen = []

    def new_task():
        task = SAETask({"sae": spec, "optim": optim, "data": {}, "seed": 0}, 16)
        start = task.on_fit_start
        task.on_fit_start = lambda: (start(), seen.append(task.sae.b_dec.detach().clone()))
        return task

    first = fit(new_task(), batches, 3, root=tmp_path)
    rows = torch.cat(batches)
    scale = 16 ** 0.5 / rows.norm(dim=1).mean()   # expected_average_only_in: mean norm sqrt(d_in)
    assert first.lightning_module.dictionaries[0].scaler.scaling_factor == pytest.approx(float(scale), rel=1e-5)
    assert torch.allclose(seen[0], rows.mean(0) * scale, atol=1e-5)
    last = tmp_path / "checkpoints" / "epoch=0-step=3.ckpt"
    saved = torch.load(last, weights_only=False)["state_dict"]["dictionaries.0.sae.b_dec"]
    assert not torch.allclose(saved, seen[0])   # it trained on
    fit(new_task(), batches, 4, ckpt_path=last)
    assert torch.equal(seen[1], saved)   # resumed: the checkpoint's b_dec, not the mean again


def test_the_interp_recipe_decays_its_length_aware_peak_linearly_to_zero_in_a_real_fit():
    import pytorch_lightning as pl

    from interp.sae.task import SAETask

    class Rates(pl.Callback):
        seen: list = []

        def on_train_batch_start(self, trainer, *args):
            self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    optim = {"name": "Adam", "lr": None, "schedule": None, "min_lr_ratio": 0.1, "betas": [0.9, 0.999]}
    task = SAETask({"sae": {**TOPK, "init": "interp", "norm_estimate_batches": 1}, "optim": optim, "data": {},
                    "seed": 0}, 16)
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         enable_checkpointing=False, callbacks=[Rates()])
    task.on_fit_end = lambda: None
    g = torch.Generator().manual_seed(0)
    trainer.fit(task, datamodule=rows_datamodule([torch.randn(8, 16, generator=g) for _ in range(4)]))
    peak = 1.6e-3 * math.sqrt(16384 / 64) * math.sqrt(244 / 4)   # the rule at 64 latents and 4 steps
    assert Rates.seen == pytest.approx([peak, 0.75 * peak, 0.5 * peak, 0.25 * peak])   # to zero, not to 0.1
