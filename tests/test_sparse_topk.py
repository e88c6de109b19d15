"""The sparse TopK / BatchTopK training step (interp.sae.fused_topk) against SAELens's dense
classes: outputs, losses (with and without dead features), every gradient, training
trajectories, the saved SAE; and firing statistics from the active indices."""

import pytest
import torch
from sae_lens import SAE, BatchTopKTrainingSAE, TopKTrainingSAE
from sae_lens.saes.sae import TrainStepInput

from interp.sae.metrics import FiringTracker
from interp.sae.spec import build_training_sae

D_IN, EXPANSION, BATCH = 16, 8, 64
ATOL = 1e-5


def pair(arch: str, **extra):
    """SAELens's dense class and ours, same weights (non-zero biases so every term has a gradient)."""
    torch.manual_seed(0)
    spec = {"architecture": arch, "k": 4, "expansion": EXPANSION, **extra}
    d_sae = D_IN * spec["expansion"]
    dense = build_training_sae({**spec, "sparse_decode": False}, d_in=D_IN)
    sparse = build_training_sae({**spec, "sparse_decode": True}, d_in=D_IN)
    assert type(dense) in (TopKTrainingSAE, BatchTopKTrainingSAE)
    assert type(sparse).__name__ in ("SparseDecodeTopKTrainingSAE", "SparseBatchTopKTrainingSAE")
    with torch.no_grad():
        dense.b_dec.normal_()
        dense.b_enc.normal_(0, 0.1)
        dense.W_dec.mul_(torch.rand(d_sae, 1) + 0.5)   # unequal decoder norms
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


def dead_mask(n_dead: int) -> torch.Tensor | None:
    if n_dead == 0:
        return None
    mask = torch.zeros(D_IN * EXPANSION, dtype=torch.bool)
    mask[torch.randperm(mask.numel(), generator=torch.Generator().manual_seed(1))[:n_dead]] = True
    return mask


def step(sae, x, dead, extra_terms: bool):
    x_in = x.clone().requires_grad_(True)
    out = sae.training_forward_pass(TrainStepInput(x_in, {}, dead, 0, False))
    loss = out.loss
    if extra_terms:   # gradients also flowing in through every output, as from any loss a caller adds
        loss = loss + 0.3 * out.sae_out.sin().sum() + 0.2 * out.feature_acts.cos().sum() \
            + 0.1 * out.hidden_pre.tanh().sum()
    loss.backward()
    return out, {n: p.grad.clone() for n, p in sae.named_parameters()}, x_in.grad


def assert_same_step(dense, sparse, x, dead, extra_terms=False):
    (d_out, d_grads, d_x), (s_out, s_grads, s_x) = (step(s, x, dead, extra_terms) for s in (dense, sparse))
    assert type(s_out).__name__ == "SparseTrainStepOutput"             # the sparse step ran, not a fallback
    for field in ("sae_out", "feature_acts", "hidden_pre", "loss"):
        assert torch.allclose(getattr(d_out, field), getattr(s_out, field), atol=ATOL), field
    assert d_out.losses.keys() == s_out.losses.keys()
    for name in d_out.losses:
        assert torch.allclose(d_out.losses[name], s_out.losses[name], atol=ATOL), name
    for name in d_grads:
        assert d_grads[name].abs().max() > 1e-3, name                   # a gradient that can differ
        assert torch.allclose(d_grads[name], s_grads[name], atol=ATOL), name
    assert torch.allclose(d_x, s_x, atol=ATOL)
    return d_out, s_out


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("rescale,apply_b_dec", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("n_dead", [0, 3, 40])   # none; fewer than k_aux = d_in/2 (scaled loss); more
def test_sparse_step_matches_saelens_in_outputs_losses_and_every_gradient(arch, rescale, apply_b_dec, n_dead):
    dense, sparse = pair(arch, rescale_acts_by_decoder_norm=rescale, apply_b_dec_to_input=apply_b_dec)
    x = torch.randn(BATCH, D_IN) * 2
    _, s_out = assert_same_step(dense, sparse, x, dead_mask(n_dead))
    aux = s_out.losses["auxiliary_reconstruction_loss"]
    assert (aux > 0) == (n_dead > 0)
    if arch == "batchtopk":
        assert torch.allclose(dense.topk_threshold, sparse.topk_threshold, atol=1e-7)
        assert sparse.topk_threshold > 0


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_gradients_through_feature_acts_and_hidden_pre_match_too(arch):
    dense, sparse = pair(arch)
    assert_same_step(dense, sparse, torch.randn(BATCH, D_IN), dead_mask(40), extra_terms=True)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_a_wide_sae_matches_too(arch):   # d_sae 1024 >= 4·16·k: TopK selects through row_topk's block path
    dense, sparse = pair(arch, k=8, expansion=64)
    dead = torch.zeros(D_IN * 64, dtype=torch.bool)
    dead[::3] = True
    assert_same_step(dense, sparse, torch.randn(BATCH, D_IN), dead, extra_terms=True)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_rows_with_fewer_than_k_positive_pre_activations_match_too(arch):
    dense, sparse = pair(arch)
    for sae in (dense, sparse):
        with torch.no_grad():
            sae.b_enc.sub_(0.4)   # most pre-activations negative: selected ones too, cut by the ReLU
    x = torch.randn(BATCH, D_IN)
    _, out = assert_same_step(dense, sparse, x, dead_mask(40), extra_terms=True)
    assert (out.active_values == 0).any() and (out.active_values > 0).any()


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_ten_adam_steps_follow_saelens_and_save_as_a_plain_saelens_sae(arch, tmp_path):
    dense, sparse = pair(arch)
    g = torch.Generator().manual_seed(2)
    opts = [torch.optim.Adam(s.parameters(), lr=1e-3) for s in (dense, sparse)]
    for i in range(10):
        x = torch.randn(BATCH, D_IN, generator=g)
        for sae, opt in zip((dense, sparse), opts):
            out = sae.training_forward_pass(TrainStepInput(x, {}, dead_mask(40 if i % 2 else 0), i, False))
            out.loss.backward()
            opt.step()
            opt.zero_grad()
    for name, p in dense.state_dict().items():
        assert torch.allclose(p, sparse.state_dict()[name], atol=1e-5), name
    sparse.save_inference_model(tmp_path / "sparse")
    dense.save_inference_model(tmp_path / "dense")
    loaded, reference = (SAE.load_from_disk(str(tmp_path / w)) for w in ("sparse", "dense"))
    assert type(loaded) is type(reference) and type(loaded).__name__ == {"topk": "TopKSAE",
                                                                          "batchtopk": "JumpReLUSAE"}[arch]
    x = torch.randn(BATCH, D_IN)
    assert torch.allclose(loaded(x), reference(x), atol=1e-5)


def test_a_hook_on_the_sae_falls_back_to_saelens_and_still_runs_it():
    dense, sparse = pair("topk")
    seen = []
    sparse.hook_sae_acts_post.add_hook(lambda act, hook: seen.append(act.shape))
    x = torch.randn(8, D_IN)
    out = sparse.training_forward_pass(TrainStepInput(x, {}, None, 0, False))
    assert seen == [torch.Size([8, D_IN * EXPANSION])] and type(out).__name__ == "TrainStepOutput"
    assert torch.allclose(out.loss, dense.training_forward_pass(TrainStepInput(x, {}, None, 0, False)).loss,
                          atol=ATOL)


def test_run_time_normalisation_falls_back_to_saelens():
    dense, sparse = pair("topk", normalize_activations="layer_norm")
    x = torch.randn(8, D_IN) * 3 + 1
    out = sparse.training_forward_pass(TrainStepInput(x, {}, None, 0, False))
    assert type(out).__name__ == "TrainStepOutput"
    assert torch.allclose(out.sae_out, dense.training_forward_pass(TrainStepInput(x, {}, None, 0, False)).sae_out,
                          atol=ATOL)


def test_autocast_falls_back_to_saelens():
    _, sparse = pair("topk")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sparse.training_forward_pass(TrainStepInput(torch.randn(8, D_IN), {}, None, 0, False))
    assert type(out).__name__ == "TrainStepOutput"


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_firing_statistics_from_active_indices_equal_the_dense_count(arch):
    _, sparse = pair(arch)
    with torch.no_grad():   # only features 0-2 can be positive: fewer than k per row, so zeros are selected too
        sparse.b_enc[3:] = -50.0
        sparse.b_enc[:3] = torch.tensor([0.0, 0.0, 50.0])   # feature 2 always fires, 0 and 1 sometimes
    dense_tracker, sparse_tracker = FiringTracker(D_IN * EXPANSION, 2), FiringTracker(D_IN * EXPANSION, 2)
    for i in range(4):
        x = torch.randn(BATCH, D_IN)
        out = sparse.training_forward_pass(TrainStepInput(x, {}, None, i, False))
        assert out._feature_acts is None                      # the dense [B, d_sae] is built only on access
        assert (out.active_values == 0).any()                 # selected but not firing: must not count
        dense_tracker.update(out.feature_acts)
        sparse_tracker.update_active(out.active_features, out.active_values, x.shape[0])
    for name, buf in dense_tracker.state_dict().items():
        assert torch.equal(buf, sparse_tracker.state_dict()[name]), name
    assert dense_tracker.fire_counts[2] == 4 * BATCH and 0 < dense_tracker.fire_counts[0] < 4 * BATCH
    assert dense_tracker.dead_mask()[3:].all() and not dense_tracker.dead_mask()[:3].any()


@pytest.mark.parametrize("D,k", [(4096, 32), (2048, 8), (1024, 32), (512, 32), (100, 3)])   # blocks of 16, 8, 4 / plain
def test_row_topk_gives_torch_topk_values_at_their_own_indices(D, k):
    from interp.sae.fused_topk import row_topk

    g = torch.Generator().manual_seed(D)
    for h in (torch.randn(64, D, generator=g),                                 # distinct values
              torch.randint(-5, 6, (64, D), generator=g).float(),               # many ties
              torch.randn(64, D, generator=g).clamp(max=-1.0)):                 # ties at the top
        vals, idx = row_topk(h, k)
        ref = torch.topk(h, k, dim=-1, sorted=False).values
        assert torch.equal(vals.sort(-1).values, ref.sort(-1).values)
        assert torch.equal(h.gather(1, idx), vals)
        assert (idx.sort(-1).values.diff(dim=-1) > 0).all()                    # k distinct features per row


def load_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "sae_throughput.py"
    spec = importlib.util.spec_from_file_location("sae_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_args(**kw):
    from types import SimpleNamespace

    return SimpleNamespace(**{"d_in": D_IN, "expansion": EXPANSION, "k": 4, "batch": 32, **kw})


def test_the_benchmark_skips_sparsify_with_a_reason_when_it_is_not_installed(monkeypatch, capsys):
    import sys

    bench = load_benchmark()
    monkeypatch.setitem(sys.modules, "sparsify", None)   # import sparsify now raises ImportError
    assert bench.sparsify(bench_args(), {}, {}, []) is None
    assert "sparsify skipped" in capsys.readouterr().out


def test_the_benchmark_runs_sparsify_steps_from_our_initial_weights():
    pytest.importorskip("sparsify")
    bench = load_benchmark()
    args = bench_args()
    spec = bench.spec_for(args, "topk", fast_paths=True)
    init = build_training_sae(spec, D_IN, "bench").state_dict()
    seconds, _ = bench.sparsify(args, spec, init, bench.synthetic_activations(2, args.batch, D_IN))
    assert seconds > 0


@pytest.mark.parametrize("skip", [False, True])
def test_the_benchmark_runs_sparsify_transcoder_steps_from_our_initial_weights(skip):
    pytest.importorskip("sparsify")
    bench = load_benchmark()
    args = bench_args()
    spec = bench.spec_for(args, "topk", fast_paths=True, skip=skip)
    init = build_training_sae(spec, D_IN, "bench").state_dict()
    assert ("W_skip" in init) == skip
    rows = bench.synthetic_transcoder_rows(2, args.batch, D_IN)
    assert rows[0].shape == (args.batch, 2 * D_IN)
    seconds, _ = bench.sparsify(args, spec, init, rows)
    assert seconds > 0


@pytest.mark.parametrize("skip", [None, False, True])
def test_the_benchmark_measures_quality_the_same_way_for_ours_and_sparsify(skip):
    """Its held-out FVU: the same weights give the same FVU through our SAE and sparsify's SparseCoder
    (SAE, transcoder, skip transcoder; a nonzero b_dec and W_skip so every term counts), and training
    lowers it."""
    pytest.importorskip("sparsify")
    bench = load_benchmark()
    args = bench_args()
    spec = bench.spec_for(args, "topk", fast_paths=True, skip=skip)
    init = build_training_sae(spec, D_IN, "bench").state_dict()
    g = torch.Generator().manual_seed(1)
    init["b_dec"] = 0.1 * torch.randn(init["b_dec"].shape, generator=g)
    if skip:
        init["W_skip"] = 0.1 * torch.randn(init["W_skip"].shape, generator=g)
    transcode = skip is not None
    make = bench.synthetic_transcoder_rows if transcode else bench.synthetic_activations
    *batches, held_out = make(21, args.batch, D_IN)
    sae = build_training_sae(spec, D_IN, "bench")
    sae.load_state_dict(init)
    ours = bench.fvu(bench.our_predict(sae.eval()), held_out, D_IN, transcode)
    _, untrained = bench.sparsify(args, spec, init, [])
    assert bench.fvu(untrained, held_out, D_IN, transcode) == pytest.approx(ours, rel=1e-5)
    _, trained = bench.sparsify(args, spec, init, batches)
    assert bench.fvu(trained, held_out, D_IN, transcode) < ours
