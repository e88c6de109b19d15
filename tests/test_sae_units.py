"""SAE building blocks, in-process: metrics against independent formulas, the activation
cache (reuse, rebuild, refusal, concurrency, a full disk), harvesting with padding."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.errors import ConfigError, DataError
from interp.models.hooks import check_hook
from interp.sae import harvest
from interp.sae.cache import MANIFEST_FILE, CacheReader, get_or_build
from interp.sae.metrics import EvalAccumulator
from interp.sae.spec import build_training_sae
from interp.sae.task import evaluate_batch

SPEC = {"architecture": "standard", "expansion": 2, "l1_coefficient": 1.0}


def tiny_transformer(d_model=16, n_ctx=12, d_vocab=50):
    cfg = HookedTransformerConfig(n_layers=2, d_model=d_model, n_heads=2, d_head=8, n_ctx=n_ctx, d_vocab=d_vocab,
                                  attn_only=True, act_fn=None, normalization_type="LN", seed=0)
    return HookedTransformer(cfg).eval()


def lm_batch(n=4, t=12, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, vocab, (n, t + 1), generator=g)
    return {"tokens": seq[:, :-1], "targets": seq[:, 1:]}


def test_reconstruction_metrics_match_an_independent_computation():
    torch.manual_seed(0)
    sae = build_training_sae(SPEC, d_in=8)
    x = torch.randn(64, 8) * 3 + 1
    feats = sae.encode(x)
    x_hat = sae.decode(feats)
    acc = EvalAccumulator(sae.cfg.d_sae, dense_threshold=0.5)
    acc.add(x[:40], x_hat[:40], feats[:40])   # two uneven batches, streamed
    acc.add(x[40:], x_hat[40:], feats[40:])
    got = acc.compute()
    xn, hn, fn = x.double().numpy(), x_hat.double().detach().numpy(), feats.detach().numpy()
    sq = ((xn - hn) ** 2).sum(1)
    assert got["mse"] == pytest.approx(sq.mean(), rel=1e-5)
    assert got["explained_variance"] == pytest.approx(1 - sq.mean() / xn.var(0).sum(), rel=1e-5)
    assert got["l0"] == pytest.approx((fn != 0).sum(1).mean(), rel=1e-6)
    assert got["dense_features"] == int(((fn != 0).mean(0) > 0.5).sum())


def identity_sae(d: int):
    """An L1 SAE that reconstructs exactly: relu(x) - relu(-x) = x."""
    sae = build_training_sae({**SPEC, "d_sae": 2 * d, "apply_b_dec_to_input": False}, d_in=d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def downstream(sae, model, hook):
    acc = EvalAccumulator(sae.cfg.d_sae, 0.1)
    evaluate_batch(sae, model, hook, lm_batch(), acc)
    return acc.compute()


def test_ce_recovered_is_one_for_an_identity_sae_and_falls_for_a_zero_one():
    model, hook = tiny_transformer(), "blocks.0.hook_resid_post"
    exact = downstream(identity_sae(16), model, hook)
    assert exact["ce_loss_with_sae"] == pytest.approx(exact["ce_loss_without_sae"], abs=1e-5)
    assert exact["ce_loss_score"] == pytest.approx(1.0, abs=1e-4)
    assert exact["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    zero = identity_sae(16)
    with torch.no_grad():
        zero.W_dec.zero_()
    broken = downstream(zero, model, hook)
    assert abs(broken["ce_loss_with_ablation"] - broken["ce_loss_without_sae"]) > 1e-3  # the hook matters
    assert broken["ce_loss_score"] == pytest.approx(0.0, abs=1e-4)        # a zero SAE is zero-ablation
    assert broken["kl_div_score"] == pytest.approx(0.0, abs=1e-4)


def test_harvest_skips_padding_and_stops_early():
    model = tiny_transformer()
    batch = lm_batch()
    batch["attention_mask"] = torch.arange(12)[None, :] < torch.tensor([12, 5, 1, 7])[:, None]
    acts = harvest.activations(model, batch, "blocks.0.hook_resid_post")
    assert acts.shape == (12 + 5 + 1 + 7, 16)
    _, cache = model.run_with_cache(batch["tokens"])
    assert torch.allclose(acts[:12], cache["blocks.0.hook_resid_post"][0], atol=1e-6)
    assert harvest.stop_layer(model, "blocks.0.hook_resid_post") == 1   # block 1 never runs


def test_a_wrong_hook_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="blocks.0.hook_resid_post") as e:
        check_hook(tiny_transformer(), "blocks.9.hook_resid_post", "sae.hook")
    assert "Valid hooks" in str(e.value)


def test_an_unknown_sae_setting_is_an_error():
    with pytest.raises(ConfigError, match="l2_coefficient"):
        build_training_sae({**SPEC, "l2_coefficient": 1.0}, d_in=8)


# --- the activation cache -------------------------------------------------------------------

FIELDS = {"base_checkpoint_sha256": "abc", "hook": "h", "data": {"name": "x"}, "n_tokens": 1000, "dtype": "float32",
          "seed": 0}


def counting_harvest(calls: list, d: int = 4):
    def fill(writer):
        calls.append(1)
        g = torch.Generator().manual_seed(len(calls))
        while writer.write(torch.randn(300, d, generator=g)) > 0:
            pass
    return fill


def test_cache_is_reused_and_rebuilt_when_its_manifest_does_not_match(tmp_path):
    calls = []
    first = get_or_build(tmp_path, FIELDS, 4, counting_harvest(calls))
    again = get_or_build(tmp_path, FIELDS, 4, counting_harvest(calls))
    assert (first.harvested, again.harvested, len(calls)) == (True, False, 1)
    assert again.path == first.path
    assert np.load(first.acts_path, mmap_mode="r").shape == (1000, 4)   # a plain .npy for notebooks

    manifest = json.loads((first.path / MANIFEST_FILE).read_text())     # a manifest for another hook
    manifest["fields"]["hook"] = "other"
    (first.path / MANIFEST_FILE).write_text(json.dumps(manifest))
    rebuilt = get_or_build(tmp_path, FIELDS, 4, counting_harvest(calls))
    assert rebuilt.harvested and len(calls) == 2


def test_a_corrupted_cache_is_detected_and_rebuilt(tmp_path):
    calls = []
    handle = get_or_build(tmp_path, FIELDS, 4, counting_harvest(calls))
    with open(handle.acts_path, "r+b") as f:   # flip one byte of data
        f.seek(500)
        byte = f.read(1)
        f.seek(500)
        f.write(bytes([byte[0] ^ 0xFF]))
    rebuilt = get_or_build(tmp_path, FIELDS, 4, counting_harvest(calls))
    assert rebuilt.harvested and len(calls) == 2


def test_a_user_given_cache_path_that_does_not_match_is_refused_not_rebuilt(tmp_path):
    handle = get_or_build(tmp_path, FIELDS, 4, counting_harvest([]))
    before = handle.acts_path.read_bytes()
    with pytest.raises(DataError, match="different hook"):
        get_or_build(tmp_path, {**FIELDS, "hook": "other"}, 4, counting_harvest([]), path=handle.path)
    assert handle.acts_path.read_bytes() == before


def test_two_jobs_starting_at_once_harvest_once(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time, torch
        from interp.sae.cache import get_or_build
        def fill(writer):
            open(sys.argv[1] + "/harvest-" + sys.argv[2], "w").close()
            time.sleep(1.0)   # a slow harvest, so the other job arrives while it runs
            while writer.write(torch.ones(300, 4)) > 0:
                pass
        h = get_or_build(sys.argv[1] + "/cache", {FIELDS!r}, 4, fill)
        print(h.harvested)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(i)], stdout=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ["False", "True"]
    assert len(list(tmp_path.glob("harvest-*"))) == 1


def test_a_full_disk_leaves_no_cache_that_looks_complete(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse writes past 8 kB (the cache is 16 kB) (EFBIG), as a full disk would.
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from interp.errors import DiskFull
        from interp.sae.cache import get_or_build
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))
        def fill(writer):
            while writer.write(torch.ones(300, 4)) > 0:
                pass
        try:
            get_or_build(sys.argv[1], {FIELDS!r}, 4, fill)
        except DiskFull as e:
            print("DiskFull:", e)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert "DiskFull: file too large on" in out.stdout and "nothing was kept" in out.stdout, out.stdout + out.stderr
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    calls = []
    assert get_or_build(tmp_path, FIELDS, 4, counting_harvest(calls)).harvested   # a later job starts clean


def test_cache_reader_visits_every_row_once_per_epoch_in_blocks(tmp_path):
    def fill(writer):
        writer.write(torch.arange(1000 * 4, dtype=torch.float32).reshape(1000, 4))
    handle = get_or_build(tmp_path, FIELDS, 4, fill)
    reader = CacheReader(handle.acts_path)
    rows = np.concatenate([b.copy() for b in reader.blocks(128, np.random.default_rng(0))])
    assert sorted(rows[:, 0].tolist()) == [4.0 * i for i in range(1000)]


def test_sparse_decode_topk_matches_saelens_dense_topk_in_loss_and_gradients():
    from sae_lens.saes.sae import TrainStepInput

    torch.manual_seed(0)
    spec = {"architecture": "topk", "k": 4, "expansion": 8}
    dense = build_training_sae({**spec, "sparse_decode": False}, d_in=16)
    sparse = build_training_sae({**spec, "sparse_decode": True}, d_in=16)
    assert type(sparse).__name__ == "SparseDecodeTopKTrainingSAE"
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(32, 16)
    dead = torch.zeros(dense.cfg.d_sae, dtype=torch.bool)
    dead[:20] = True   # exercise the auxiliary dead-feature loss too
    outs = []
    for sae in (dense, sparse):
        out = sae.training_forward_pass(TrainStepInput(x, {}, dead, 0, False))
        out.loss.backward()
        outs.append((out, {n: p.grad.clone() for n, p in sae.named_parameters()}))
    (d_out, d_grads), (s_out, s_grads) = outs
    assert torch.allclose(d_out.sae_out, s_out.sae_out, atol=1e-5)
    assert torch.allclose(d_out.loss, s_out.loss, atol=1e-5)
    for name in d_grads:
        assert torch.allclose(d_grads[name], s_grads[name], atol=1e-5), name


@pytest.mark.parametrize("apply_b_dec_to_input", [True, False])
def test_fused_standard_step_matches_saelens_standard_in_outputs_and_every_gradient(apply_b_dec_to_input):
    from sae_lens.saes.sae import TrainStepInput

    torch.manual_seed(0)
    spec = {"architecture": "standard", "expansion": 4, "apply_b_dec_to_input": apply_b_dec_to_input}
    plain = build_training_sae({**spec, "fused": False}, d_in=16)
    fused = build_training_sae({**spec, "fused": True}, d_in=16)
    assert type(fused).__name__ == "FusedStandardTrainingSAE"
    with torch.no_grad():                      # non-zero biases, so every term has a gradient
        plain.b_dec.normal_()
        plain.b_enc.normal_(0, 0.1)
        plain.W_dec[3].zero_()                 # a zero decoder row: its norm's gradient is 0 in both
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(64, 16)
    outs = []
    for sae in (plain, fused):
        x_in = x.clone().requires_grad_(True)
        out = sae.training_forward_pass(TrainStepInput(x_in, {"l1": 0.7}, None, 0, False))
        # Gradients also flow in through sae_out and feature_acts, as from any loss a caller adds.
        (out.loss + 0.3 * out.sae_out.sin().sum() + 0.2 * out.feature_acts.cos().sum()).backward()
        outs.append((out, {n: p.grad.clone() for n, p in sae.named_parameters()}, x_in.grad))
    (p_out, p_grads, p_x), (f_out, f_grads, f_x) = outs
    for field in ("sae_out", "feature_acts", "hidden_pre", "loss"):
        assert torch.allclose(getattr(p_out, field), getattr(f_out, field), atol=1e-5), field
    for name in ("mse_loss", "l1_loss"):
        assert torch.allclose(p_out.losses[name], f_out.losses[name], atol=1e-5), name
    for name in p_grads:
        assert torch.allclose(p_grads[name], f_grads[name], atol=1e-5), name
    assert torch.allclose(p_x, f_x, atol=1e-6)


def test_fused_standard_step_falls_back_to_saelens_when_a_hook_is_attached():
    from sae_lens.saes.sae import TrainStepInput

    fused = build_training_sae({"architecture": "standard", "expansion": 4, "fused": True}, d_in=16)
    seen = []
    fused.hook_sae_acts_post.add_hook(lambda act, hook: seen.append(act.shape))
    fused.training_forward_pass(TrainStepInput(torch.randn(8, 16), {"l1": 1.0}, None, 0, False))
    assert seen == [torch.Size([8, 64])]       # the hook ran: SAELens's own path was taken


def test_stream_source_serves_shuffled_harvested_rows_in_batches():
    from itertools import islice

    from interp.sae.source import StreamBuffer

    model, hook = tiny_transformer(), "blocks.0.hook_resid_post"
    batches = [lm_batch(seed=i) for i in range(3)]
    every_row = torch.cat([harvest.activations(model, b, hook) for b in batches])   # 144 rows
    stream = StreamBuffer(model, batches, hook, batch_size=16, buffer_rows=64, seed=0)
    served = torch.cat(list(islice(iter(stream), 8)))
    assert served.shape == (128, 16)
    distance = (served[:, None, :] - every_row[None, :, :]).abs().amax(-1).min(dim=1).values
    assert distance.max() < 1e-6                                   # every row is a real activation
    assert not torch.allclose(served[:16], every_row[:16])          # ... not served in harvest order


def test_under_ddp_each_rank_streams_activations_of_its_own_base_batches(monkeypatch):
    from itertools import islice

    from interp.sae import source

    model, hook = tiny_transformer(), "blocks.0.hook_resid_post"
    batches = [lm_batch(seed=i) for i in range(4)]
    per_batch = [harvest.activations(model, b, hook) for b in batches]   # 48 rows each
    monkeypatch.setattr(source, "_rank_and_world", lambda: (1, 2))
    served = torch.cat(list(islice(iter(source.StreamBuffer(model, batches, hook, 16, 96, seed=0)), 6)))

    def nearest_batch(row):
        return min(range(4), key=lambda i: (per_batch[i] - row).abs().amax(-1).min().item())
    assert {nearest_batch(row) for row in served} == {1, 3}   # rank 1 of 2: base batches 1, 3, 5, ...


@pytest.mark.parametrize("arch", ["standard", "topk", "batchtopk", "jumprelu", "gated"])
def test_the_evaluated_sae_is_exactly_what_saelens_loads_from_disk(arch, tmp_path):
    from sae_lens import SAE
    from sae_lens.saes.sae import TrainStepInput

    from interp.sae.spec import inference_sae

    torch.manual_seed(0)
    sae = build_training_sae({"architecture": arch, "expansion": 4, "k": 4} if "topk" in arch
                             else {"architecture": arch, "expansion": 4}, d_in=16, hook="h")
    x = torch.randn(64, 16)
    coeffs = {k: getattr(v, "value", v) for k, v in sae.get_coefficients().items()}
    for step in range(3):   # move BatchTopK's threshold and the weights off their initial values
        out = sae.training_forward_pass(TrainStepInput(x, coeffs, None, step, False))
        out.loss.backward()
        with torch.no_grad():
            for p in sae.parameters():
                p -= 1e-2 * p.grad
                p.grad = None
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(str(tmp_path))
    ours = inference_sae(sae)
    assert type(ours) is type(loaded)
    assert torch.allclose(ours.decode(ours.encode(x)), loaded.decode(loaded.encode(x)), atol=1e-6)


def test_downstream_ce_and_kl_match_saelens_definitions():
    from sae_lens.evals import _kl

    from interp.sae.metrics import CleanLogProbs

    g = torch.Generator().manual_seed(0)
    clean, sae, abl = (3 * torch.randn(3, 5, 11, generator=g) for _ in range(3))
    targets = torch.randint(0, 11, (3, 5), generator=g)
    keep = torch.rand(3, 5, generator=g) > 0.3
    reference = CleanLogProbs(clean, targets, keep)
    assert torch.allclose(reference.ce, torch.nn.functional.cross_entropy(clean[keep], targets[keep],
                                                                          reduction="none"), atol=1e-5)
    for run in (sae, abl):
        ce, kl = reference.compare(run)
        assert torch.allclose(ce, torch.nn.functional.cross_entropy(run[keep], targets[keep], reduction="none"),
                              atol=1e-5)
        assert torch.allclose(kl, _kl(clean[keep], run[keep]), atol=1e-5)
    assert torch.allclose(reference.compare(clean)[1], torch.zeros(int(keep.sum())), atol=1e-5)


def test_dictionaries_sharing_a_batch_get_the_metrics_each_gets_alone():
    """The validation of a many-dictionary run shares the clean run, its log-probs and each hook's
    ablation between dictionaries: each dictionary's metrics equal its own evaluation's."""
    model = tiny_transformer()
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.1.hook_resid_post"]
    saes = []
    for i, _ in enumerate(hooks):
        torch.manual_seed(i)
        saes.append(build_training_sae({**SPEC, "d_sae": 32}, d_in=16))
    batch = lm_batch()
    shared = {"clean": model.run_with_cache(batch["tokens"], names_filter=hooks)}
    for sae, hook in zip(saes, hooks):
        together, alone = EvalAccumulator(32, 0.1), EvalAccumulator(32, 0.1)
        evaluate_batch(sae, model, hook, batch, together, shared)
        evaluate_batch(sae, model, hook, batch, alone)
        a, b = together.compute(), alone.compute()
        assert a.keys() == b.keys() and "kl_div_with_sae" in a
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    assert sum(1 for k in shared if isinstance(k, tuple)) == 2   # one ablation per distinct target hook


def test_a_phase_reports_its_own_time_without_the_phases_inside_it():
    import time

    from interp import phases

    phases.reset()
    with phases.timed("outer"):
        time.sleep(0.05)
        with phases.timed("inner"):
            time.sleep(0.3)
    with phases.timed("inner"):   # a phase entered twice adds up
        time.sleep(0.05)
    got = phases.summary()
    assert set(got) == {"time/outer_s", "time/inner_s"}
    assert 0.35 <= got["time/inner_s"] and 0.05 <= got["time/outer_s"] < 0.25
    phases.reset()
    assert phases.summary() == {}
