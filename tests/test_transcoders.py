"""Transcoders (an MLP's input -> its output), skip transcoders and Matryoshka SAEs: the training step
against SAELens's own classes, the fast steps (sparse TopK / BatchTopK, fused standard) against that
dense step, SAELens loading the saved files, interventions at the target hook, bad
input, and a run end to end."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import FAST, REPO, SAE_FAST_COMMON
from sae_lens.saes.sae import TrainStepInput
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.errors import ConfigError
from interp.features.interventions import ablation_hook, attribute, hooked, steering_hook
from interp.sae.architectures import FAST_STEPS, training_classes
from interp.sae.sites import reconstruct, sites_of
from interp.sae.spec import build_training_sae, inference_sae

D = 16
K_ARCHS = ("topk", "batchtopk", "matryoshka")


def spec(arch: str, skip: bool = False, **extra) -> dict:
    out = {"architecture": arch, "expansion": 4, "hook": "blocks.0.ln2.hook_normalized",
           "target_hook": "blocks.0.hook_mlp_out", "skip": skip, "apply_b_dec_to_input": False, **extra}
    return {**out, "k": 4} if arch in K_ARCHS else out


def rows(n=64, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    return x, torch.tanh(x @ torch.randn(D, D, generator=g)) + 0.1 * torch.randn(n, D, generator=g)


def step(sae, x, y, dead=None):
    return sae.training_forward_pass(TrainStepInput(
        sae_in=torch.cat([x, y], 1), coefficients={n: getattr(c, "value", c) for n, c in sae.get_coefficients().items()},
        dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False))


@pytest.mark.parametrize("arch", ["standard", "topk", "batchtopk", "jumprelu"])
def test_the_step_is_saelens_own_measured_against_the_target(arch):
    torch.manual_seed(0)
    ours = build_training_sae(spec(arch), d_in=D, hook="blocks.0.ln2.hook_normalized")
    cfg_cls, sae_cls = training_classes(arch)
    plain = sae_cls(ours.cfg)               # SAELens's class, untouched
    plain.load_state_dict(ours.state_dict())
    x, y = rows()
    dead = torch.zeros(ours.cfg.d_sae, dtype=torch.bool)
    dead[::3] = True                        # TopK's AuxK acts on the residual y - ŷ
    out = step(ours, x, y, dead)
    feats, hidden = plain.encode_with_hidden_pre(x)
    expected = plain.decode(feats)
    assert torch.allclose(out.sae_out, expected, atol=1e-6)
    assert out.losses["mse_loss"].item() == pytest.approx((expected - y).pow(2).sum(-1).mean().item(), rel=1e-6)
    aux = plain.calculate_aux_loss(step_input=TrainStepInput(y, {n: getattr(c, "value", c) for n, c in
                                                                 plain.get_coefficients().items()}, dead, 0, False),
                                   feature_acts=feats, hidden_pre=hidden, sae_out=expected)
    for name, value in aux.items():
        assert out.losses[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name


def test_a_skip_transcoder_adds_its_linear_path_and_learns_it():
    torch.manual_seed(0)
    sae = build_training_sae(spec("topk", skip=True), d_in=D, hook="blocks.0.ln2.hook_normalized")
    assert torch.count_nonzero(sae.W_skip) == 0   # starts as a plain transcoder
    with torch.no_grad():
        sae.W_skip.normal_()
    x, y = rows()
    out = step(sae, x, y)
    sae._input = x
    plain_out = type(sae).__mro__[2].decode(sae, sae.encode_with_hidden_pre(x)[0])   # TopKTrainingSAE's decode
    sae._input = None
    assert torch.allclose(out.sae_out, plain_out + x @ sae.W_skip.T, atol=1e-5)
    out.loss.backward()
    assert sae.W_skip.grad is not None and sae.W_skip.grad.abs().sum() > 0


FAST_FLAG = {"topk": "sparse_decode", "batchtopk": "sparse_decode", "standard": "fused"}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def dense_and_fast(arch: str, skip: bool):
    """The dense transcoder (TranscodingMixin over SAELens's class) and the fast one, same weights: non-zero
    biases, unequal decoder norms and a non-zero skip path, so every term has a gradient."""
    torch.manual_seed(0)
    dense, fast = (build_training_sae({**spec(arch, skip), FAST_FLAG[arch]: on}, d_in=D, hook="h")
                   for on in (False, True))
    assert type(dense).__mro__[2] is training_classes(arch)[1]
    assert type(fast).__mro__[2] is FAST_STEPS[(arch, FAST_FLAG[arch])]
    with torch.no_grad():
        dense.b_dec.normal_()
        dense.b_enc.normal_(0, 0.1)
        dense.W_dec.mul_(torch.rand(dense.cfg.d_sae, 1) + 0.5)
        if skip:
            dense.W_skip.normal_(0, 0.3)
    fast.load_state_dict(dense.state_dict())
    return dense, fast


@pytest.mark.parametrize("arch", list(FAST_FLAG))
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("extra_terms", [False, True])
def test_the_fast_transcoder_step_matches_the_dense_one_in_outputs_losses_and_every_gradient(arch, skip, extra_terms):
    dense, fast = dense_and_fast(arch, skip)
    x, y = rows()
    dead = torch.zeros(dense.cfg.d_sae, dtype=torch.bool)
    dead[::3] = True                        # TopK's and BatchTopK's AuxK acts on the residual y - ŷ
    results = []
    for sae in (dense, fast):
        out = step(sae, x, y, dead)
        loss = out.loss
        if extra_terms:   # gradients also flowing in through the outputs, as from any loss a caller adds
            loss = loss + 0.3 * out.sae_out.sin().sum() + 0.2 * out.feature_acts.cos().sum()
        loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in sae.named_parameters()}))
    (d_out, d_grads), (f_out, f_grads) = results
    assert type(f_out.sae_out.grad_fn).__name__ in ("_SparseTopKStepBackward", "_FusedStandardStepBackward")
    assert torch.equal(f_out.sae_in, y)
    for field in ("sae_out", "feature_acts", "hidden_pre"):
        assert rel_err(getattr(f_out, field), getattr(d_out, field)) < 1e-5, field
    assert f_out.losses.keys() == d_out.losses.keys()
    for name in d_out.losses:
        assert rel_err(f_out.losses[name], d_out.losses[name]) < 1e-5, name
    assert rel_err(f_out.loss, d_out.loss) < 1e-5
    assert set(f_grads) == set(d_grads) == {"W_enc", "b_enc", "W_dec", "b_dec", *(["W_skip"] if skip else [])}
    for name, grad in d_grads.items():
        assert grad.norm() > 0 and rel_err(f_grads[name], grad) < 1e-5, name
    if arch != "standard":
        assert f_out.losses["auxiliary_reconstruction_loss"] > 0
    if arch == "batchtopk":
        assert fast.topk_threshold > 0 and rel_err(fast.topk_threshold, dense.topk_threshold) < 1e-6


@pytest.mark.parametrize("arch", list(FAST_FLAG))
def test_ten_adam_steps_of_the_fast_skip_transcoder_follow_the_dense_one(arch):
    dense, fast = dense_and_fast(arch, skip=True)
    opts = [torch.optim.Adam(s.parameters(), lr=1e-3) for s in (dense, fast)]
    dead = torch.zeros(dense.cfg.d_sae, dtype=torch.bool)
    dead[1::4] = True
    for i in range(10):
        x, y = rows(seed=i)
        for sae, opt in zip((dense, fast), opts):
            step(sae, x, y, dead if i % 2 else None).loss.backward()
            opt.step()
            opt.zero_grad()
    for name, p in dense.state_dict().items():
        assert torch.allclose(fast.state_dict()[name], p, atol=1e-5), name


@pytest.mark.parametrize("arch", list(FAST_FLAG))
def test_the_transcoder_config_group_trains_with_the_fast_step(arch):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        topk_only = ["~sae.k", "~sae.aux_loss_coefficient", "~sae.use_sparse_activations"] if arch == "standard" else []
        cfg = compose("train", ["task=sae", "sae=transcoder", f"sae.architecture={arch}", *topk_only,
                                "sae.cache.root=unused"])   # its default needs Hydra's run-time config
    sae = build_training_sae(cfg.sae, d_in=D, hook=cfg.sae.hook)
    assert type(sae).__mro__[2] is FAST_STEPS[(arch, FAST_FLAG[arch])] and sae.W_skip.shape == (D, D)


SAVED_AS = {("standard", False): "Transcoder", ("standard", True): "SkipTranscoder",
            ("jumprelu", False): "JumpReLUTranscoder", ("jumprelu", True): "JumpReLUSkipTranscoder",
            ("batchtopk", False): "JumpReLUTranscoder", ("topk", False): "TopKTranscoder",
            ("topk", True): "TopKSkipTranscoder"}


def trained(arch: str, skip: bool):
    torch.manual_seed(0)
    sae = build_training_sae(spec(arch, skip), d_in=D, hook="blocks.0.ln2.hook_normalized")
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for i in range(30):
        x, y = rows(seed=i)
        opt.zero_grad()
        step(sae, x, y).loss.backward()
        opt.step()
    return sae


def test_saved_transcoders_load_in_saelens_as_its_transcoders_and_give_our_outputs(tmp_path):
    """SAELens's own loader, in a process that never imports interp (the TopK ones need interp's registration)."""
    x, _ = rows(seed=99)
    expected = {}
    for (arch, skip), cls in SAVED_AS.items():
        sae = trained(arch, skip)
        saved = inference_sae(sae)
        saved.save_model(tmp_path / f"{arch}-{skip}")
        with torch.no_grad():
            ours = reconstruct(saved, x, saved.encode(x))
            if arch != "batchtopk":   # BatchTopK is saved as JumpReLU with its learned threshold, as SAELens does
                sae.eval()
                sae._input = x
                train_form = sae.decode(sae.encode_with_hidden_pre(x)[0])
                sae._input = None
                assert torch.allclose(ours, train_form, atol=1e-5), (arch, skip)
        expected[f"{arch}-{skip}"] = (cls, ours.tolist())
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent("""
        import json, sys, torch
        from pathlib import Path
        from sae_lens import SAE
        root = Path(sys.argv[1]); x = torch.load(root / "x.pt"); out = {}
        for name in json.loads(sys.argv[2]):
            if "topk-" in name and "batchtopk" not in name:
                import interp.sae.transcoder  # noqa: F401  (registers topk_transcoder with SAELens)
            sae = SAE.load_from_disk(str(root / name))
            meta = sae.cfg.metadata
            out[name] = [type(sae).__name__, sae.cfg.d_out, meta.hook_name, meta.hook_name_out,
                         sae.forward(x).tolist(), any(m.split(".")[0] == "interp" for m in sys.modules)]
        print(json.dumps(out))
    """)
    names = sorted(expected, key=lambda n: "topk-" in n and "batchtopk" not in n)   # the TopK ones last
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps(names)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (cls, ours) in expected.items():
        kind, d_out, hook, hook_out, theirs, imported_interp = got[name]
        assert (kind, d_out, hook, hook_out) == (cls, D, "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out")
        assert torch.allclose(torch.tensor(theirs), torch.tensor(ours), atol=1e-5), name
        if "topk-" not in name or "batchtopk" in name:
            assert not imported_interp, name   # SAELens alone loads these


def tiny_mlp_transformer():
    cfg = HookedTransformerConfig(n_layers=2, d_model=D, n_heads=2, d_head=8, n_ctx=12, d_vocab=50, d_mlp=32,
                                  act_fn="gelu", normalization_type="LN", seed=0)
    return HookedTransformer(cfg).eval()


def test_interventions_read_the_mlp_input_and_act_on_the_mlp_output():
    model, sae = tiny_mlp_transformer(), inference_sae(trained("topk", True))
    assert sites_of(sae).target == "blocks.0.hook_mlp_out"
    tokens = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    _, clean = model.run_with_cache(tokens, names_filter=["blocks.0.hook_mlp_out", "blocks.0.ln2.hook_normalized"])
    with torch.no_grad(), hooked(model, sae, steering_hook(sae, 3, 2.0)):
        _, steered = model.run_with_cache(tokens, names_filter=["blocks.0.hook_mlp_out"])
    delta = steered["blocks.0.hook_mlp_out"] - clean["blocks.0.hook_mlp_out"]
    assert torch.allclose(delta, (2.0 * sae.W_dec[3]).expand_as(delta), atol=1e-5)
    # Ablating a feature removes exactly its share of the transcoder's output of the MLP's input.
    x = clean["blocks.0.ln2.hook_normalized"]
    feats = sae.encode(x)
    with torch.no_grad(), hooked(model, sae, ablation_hook(sae, [3])):
        _, ablated = model.run_with_cache(tokens, names_filter=["blocks.0.hook_mlp_out"])
    change = ablated["blocks.0.hook_mlp_out"] - clean["blocks.0.hook_mlp_out"]
    assert torch.allclose(change, -feats[..., 3:4] * sae.W_dec[3], atol=1e-5)
    result = attribute(model, sae, tokens[:1], answer=7)
    assert result["attr"].sum(-1).add(result["rest"]).sum().item() == pytest.approx(
        result["grad_dot_x"].sum().item(), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("arch, bad, needle", [
    ("gated", {}, "cannot be a transcoder"),
    ("matryoshka", {}, "cannot be a transcoder"),
    ("topk", {"skip": True, "target_hook": None}, "sae.target_hook is not set"),
    ("topk", {"apply_b_dec_to_input": True}, "apply_b_dec_to_input"),
    ("standard", {"normalize_activations": "expected_average_only_in"}, "normalize_activations"),
])
def test_transcoder_settings_saelens_cannot_train_or_load_are_refused(arch, bad, needle):
    with pytest.raises(ConfigError, match=needle):
        build_training_sae({**spec(arch), **bad}, d_in=D, hook="blocks.0.ln2.hook_normalized")


def test_matryoshka_is_saelens_class_with_nested_widths_ending_at_d_sae():
    sae = build_training_sae({"architecture": "matryoshka", "k": 4, "expansion": 4}, d_in=D, hook="h")
    assert type(sae).__name__ == "MatryoshkaBatchTopKTrainingSAE"
    assert sae.cfg.matryoshka_widths == [4, 8, 16, 32, 64]
    assert build_training_sae({"architecture": "matryoshka", "k": 4, "expansion": 4, "matryoshka_widths": [16, 64]},
                              d_in=D).cfg.matryoshka_widths == [16, 64]
    with pytest.raises(ConfigError, match=r"ending at the SAE's d_sae=64"):
        build_training_sae({"architecture": "matryoshka", "k": 4, "expansion": 4, "matryoshka_widths": [16, 48]},
                           d_in=D)


# --- end to end: train.py on a small transformer with MLPs --------------------------------------------

@pytest.fixture(scope="module")
def mlp_base(run_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("transcoders")
    run_train("model=transformer", "model.n_layers=2", "data=code", *FAST, "logger=none", run_dir=root / "base")
    return root


TRANSCODER_RUN = [*SAE_FAST_COMMON, "sae=transcoder", "sae.layer=1", "sae.k=8", "trainer.max_steps=30"]


@pytest.mark.slow
def test_a_skip_transcoder_run_trains_reports_mlp_metrics_and_feeds_the_feature_analyses(run_train, mlp_base,
                                                                                        train_env):
    run = mlp_base / "tc"
    run_train(*TRANSCODER_RUN, f"base_run={mlp_base / 'base'}", f"sae.cache.root={mlp_base / 'cache'}", run_dir=run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/l0"] == pytest.approx(8) and 0 < metrics["val/kl_div_with_sae"] < metrics["val/kl_div_with_ablation"]
    assert {"val/explained_variance", "val/ce_loss_score", "val/dead_features"} <= set(metrics)
    cfg = json.loads((run / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk_skip_transcoder" and cfg["metadata"]["hook_name_out"] == "blocks.1.hook_mlp_out"
    from interp.runs import load_run
    loaded = load_run(run)
    assert type(loaded.sae).__name__ == "TopKSkipTranscoder"
    proc = subprocess.run([sys.executable, "analyze.py", f"run={run}", "analysis=[dashboard,steer,ablate]",
                           "feature=0", "prompt=def f(x):", "answer=return", "n_features=2", "n_batches=1"], cwd=REPO,
                          env=train_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("dashboard", "steer", "ablate"):
        assert any((run / "figures" / name).iterdir()), name


@pytest.mark.slow
@pytest.mark.parametrize("overrides, needle", [
    (["sae.hook=blocks.1.hook_mlp_out", "sae.target_hook=blocks.1.ln2.hook_normalized"], "comes before"),
    (["sae.target_hook=blocks.1.mlp.hook_post"], "has width"),
])
def test_transcoder_sites_in_the_wrong_order_or_of_other_widths_are_one_error(run_train, mlp_base, overrides, needle):
    proc = run_train(*TRANSCODER_RUN, f"base_run={mlp_base / 'base'}", *overrides, run_dir=mlp_base / "bad",
                     expect_ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and needle in line and "Fix:" in line
    assert not (mlp_base / "bad" / "checkpoints").exists()
