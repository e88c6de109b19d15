"""GPT-2 through TransformerLens, tested offline on a tiny real GPT-2 saved by `transformers`."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from omegaconf import OmegaConf
from tiny_gpt2 import N_POSITIONS, VOCAB, fill_gpt2_snapshot, hub_snapshot, make_tiny_gpt2
from transformer_lens import HookedTransformer
from transformer_lens.utilities.activation_functions import gelu_pytorch_tanh

from interp.data.tokenizer import Tokenizer
from interp.errors import ConfigError, DataError
from interp.models import build_model
from interp.models.fused_ops import unfused
from interp.models.gpt2 import load_gpt2

REPO = Path(__file__).resolve().parents[1]
NO_PROCESSING = {"fold_ln": False, "center_writing_weights": False, "center_unembed": False, "fold_value_biases": False}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="module")
def hf_logprobs(tiny_dir):
    hf = transformers.GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    tokens = torch.randint(0, VOCAB, (3, N_POSITIONS), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return tokens, hf(tokens).logits.log_softmax(-1)


@pytest.mark.parametrize("processing", [{}, NO_PROCESSING], ids=["processed", "unprocessed"])
def test_local_route_matches_hugging_face_logprobs(tiny_dir, hf_logprobs, processing):
    tokens, expected = hf_logprobs
    model = load_gpt2(local_dir=str(tiny_dir), **processing)
    with torch.no_grad():
        got = model(tokens).log_softmax(-1)
    assert expected.std() > 0.5          # far from uniform: a wrong weight mapping would show
    assert (got - expected).abs().max() < 1e-5
    assert model.cfg.n_ctx == N_POSITIONS and model.cfg.d_vocab == VOCAB and not model.training
    assert model.cfg.normalization_type == ("LNPre" if processing == {} else "LN")


def test_local_route_is_exact_in_float64(tiny_dir, hf_logprobs):
    # Without processing the conversion is a relabelling: float64 leaves only rounding.
    # (With processing TransformerLens 3.9 folds in float32 even for float64 models: ~2e-8.)
    tokens, _ = hf_logprobs
    hf = transformers.GPT2LMHeadModel.from_pretrained(tiny_dir, dtype=torch.float64).eval()
    model = load_gpt2(local_dir=str(tiny_dir), dtype="float64", **NO_PROCESSING)
    with torch.no_grad():
        assert (model(tokens).log_softmax(-1) - hf(tokens).logits.log_softmax(-1)).abs().max() < 1e-12


def test_processing_centres_residual_writes(tiny_dir):
    centred = load_gpt2(local_dir=str(tiny_dir))
    raw = load_gpt2(local_dir=str(tiny_dir), **NO_PROCESSING)
    tokens = torch.arange(10)[None]
    _, c = centred.run_with_cache(tokens, names_filter="blocks.1.hook_resid_pre")
    _, r = raw.run_with_cache(tokens, names_filter="blocks.1.hook_resid_pre")
    assert c["blocks.1.hook_resid_pre"].mean(-1).abs().max() < 1e-5    # center_writing_weights
    assert r["blocks.1.hook_resid_pre"].mean(-1).abs().max() > 1e-2


def test_provenance_names_folder_and_weight_hash(tiny_dir):
    model = load_gpt2(name="tiny", local_dir=str(tiny_dir), center_unembed=False)
    prov = model.provenance
    digest = hashlib.sha256((tiny_dir / "model.safetensors").read_bytes()).hexdigest()
    assert prov["source"] == "local" and prov["name"] == "tiny" and prov["local_dir"] == str(tiny_dir.resolve())
    assert prov["weights_sha256"] == {"model.safetensors": digest}
    assert prov["processing"] == {"fold_ln": True, "center_writing_weights": True, "center_unembed": False,
                                  "fold_value_biases": True}
    json.dumps(prov)   # runs store it as JSON


def test_gpt2_tokenizer_ids_round_trip(tiny_dir):
    tok = Tokenizer(VOCAB)
    assert tok.encode("Hello world") == [15496, 995]
    text = "def f(x):\n    return x**2  # квадрат 🙂 https://example.org/?q=1"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    # The folder's tokenizer (GPT-2's vocab.json/merges.txt) rides on the model: same ids.
    model = load_gpt2(local_dir=str(tiny_dir))
    assert model.to_tokens(text, prepend_bos=False)[0].tolist() == ids
    assert model.to_tokens("Hello world")[0].tolist() == [tok.eot_id, 15496, 995]


def test_n_ctx_keeps_first_positions(tiny_dir, hf_logprobs):
    tokens, expected = hf_logprobs
    model = load_gpt2(local_dir=str(tiny_dir), n_ctx=16)
    assert model.W_pos.shape[0] == 16
    with torch.no_grad():
        assert (model(tokens[:, :16]).log_softmax(-1) - expected[:, :16]).abs().max() < 1e-5


def test_registry_builds_from_the_config_file(tiny_dir):
    cfg = OmegaConf.load(REPO / "conf" / "model" / "gpt2.yaml")
    cfg.local_dir = str(tiny_dir)
    cfg.n_ctx = 32
    model = build_model(cfg)
    assert isinstance(model, HookedTransformer) and model.cfg.n_ctx == 32 and model.cfg.d_vocab == VOCAB


def test_bad_folders_say_what_is_missing(tiny_dir, tmp_path):
    (tmp_path / "no_config").mkdir()
    (tmp_path / "no_config" / "model.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match=r"config\.json is missing.*model\.local_dir="):
        load_gpt2(local_dir=str(tmp_path / "no_config"))
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(DataError, match=r"no weights.*model\.safetensors"):
        load_gpt2(local_dir=str(tmp_path / "no_weights"))
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(DataError, match="'llama' model"):
        load_gpt2(local_dir=str(tmp_path / "llama"))
    with pytest.raises(DataError, match="not a directory"):
        load_gpt2(local_dir=str(tmp_path / "absent"))


def test_sizes_that_disagree_with_the_checkpoint(tiny_dir):
    with pytest.raises(ConfigError, match=r"model\.d_vocab=50257"):
        load_gpt2(local_dir=str(tiny_dir), d_vocab=8192)
    with pytest.raises(ConfigError, match=f"context {N_POSITIONS}"):
        load_gpt2(local_dir=str(tiny_dir), n_ctx=N_POSITIONS + 1)
    with pytest.raises(ConfigError, match="gpt2-medium"):
        load_gpt2(name="gpt-3")


# The hub route reads the HF cache location and offline flag at import: run it in a fresh interpreter.
HUB_SCRIPT = textwrap.dedent("""
    import json, os, sys, time, torch
    from interp.errors import DataError
    from interp.models.gpt2 import load_gpt2
    out = {}
    def fails(**kw):
        t = time.perf_counter()
        try:
            load_gpt2(**kw)
        except DataError as e:
            return {"seconds": time.perf_counter() - t, "message": str(e)}
    out["unreachable"] = fails(name="gpt2-medium")        # not cached, hub unreachable
    hub = load_gpt2("gpt2")                                # from the cache, by TransformerLens's from_pretrained
    local = load_gpt2(local_dir=sys.argv[1])
    tokens = torch.arange(40).reshape(2, 20) * 1000
    with torch.no_grad():
        out["max_logit_diff"] = (hub(tokens) - local(tokens)).abs().max().item()
    a, b = hub.cfg.to_dict(), local.cfg.to_dict()
    out["cfg_diff"] = sorted(k for k in a if a[k] != b[k])
    out["provenance"] = hub.provenance
    os.environ["HF_HUB_OFFLINE"] = "1"
    out["offline"] = fails(name="gpt2-xl")
    print(json.dumps(out))
""")


def test_hub_route_uses_the_cache_and_fails_fast_without_it(tiny_dir, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    fill_gpt2_snapshot(hub_snapshot(tmp_path / "hub", "gpt2", commit), tiny_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # A closed local port as the hub: unreachable on any machine, so nothing is ever downloaded.
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(tiny_dir)], check=False, env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["max_logit_diff"] == 0.0                  # same weights, same processing as from_pretrained
    assert out["cfg_diff"] == ["tokenizer_name"]         # our config is TransformerLens's own for GPT-2
    prov = out["provenance"]
    assert prov["source"] == "hub" and prov["name"] == "gpt2" and prov["revision"] == commit
    assert prov["weights_sha256"]["model.safetensors"] == hashlib.sha256(
        (tiny_dir / "model.safetensors").read_bytes()).hexdigest()
    for case, why in (("unreachable", "hub is unreachable"), ("offline", "HF_HUB_OFFLINE is set")):
        assert out[case] is not None, f"{case}: no DataError"
        assert out[case]["seconds"] < 5, out[case]
        msg = out[case]["message"]
        assert why in msg and "network access" in msg and "model.local_dir=/path" in msg, msg


@pytest.mark.parametrize("processing", [{}, NO_PROCESSING], ids=["processed", "unprocessed"])
def test_fused_gelu_layer_norm_and_attention_equal_transformer_lens_own_and_keep_every_hook(tiny_dir, hf_logprobs,
                                                                                          processing):
    tokens, _ = hf_logprobs
    fused = load_gpt2(local_dir=str(tiny_dir), **processing)
    plain = unfused(fused)
    assert fused.blocks[0].mlp.act_fn is gelu_pytorch_tanh and "forward" in vars(fused.blocks[0].ln1)
    assert "forward" in vars(fused.blocks[0].attn)
    names = ["blocks.0.ln2.hook_normalized", "blocks.1.ln1.hook_scale", "blocks.1.mlp.hook_post",
             "blocks.1.attn.hook_z", "blocks.1.attn.hook_q", "blocks.0.attn.hook_pattern"]
    with torch.no_grad():
        assert (fused(tokens) - plain(tokens)).abs().max() < 1e-5
        got, want = (m.run_with_cache(tokens, names_filter=names)[1] for m in (fused, plain))
    # a hooked LayerNorm or pattern (block 0) takes TransformerLens's path, so its hooks see their values;
    # block 1's attention stays fused and its hook_q and hook_z fire with TransformerLens's values
    for name in names:
        assert (got[name] - want[name]).abs().max() < 1e-5, name


def test_fused_attention_gives_way_to_pattern_hooks_padding_and_gradients(tiny_dir, hf_logprobs, monkeypatch):
    """An intervention on the pattern (patching, frozen attention) reaches the output, a padding mask is
    honoured, and gradients through the fused path equal TransformerLens's."""
    import torch.nn.functional as F

    tokens, _ = hf_logprobs
    fused = load_gpt2(local_dir=str(tiny_dir))
    plain = unfused(fused)
    calls, sdpa = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    with torch.no_grad():
        fused(tokens)
        assert len(calls) == fused.cfg.n_layers   # unhooked: every layer takes the fused kernel
        fused.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern"])
        assert len(calls) == 2 * fused.cfg.n_layers - 1   # the hooked layer does not

    def uniform(pattern, hook):   # attend equally to every earlier position
        causal = torch.ones_like(pattern).tril()
        return causal / causal.sum(-1, keepdim=True)

    hooks = [("blocks.1.attn.hook_pattern", uniform)]
    with torch.no_grad():
        patched = fused.run_with_hooks(tokens, fwd_hooks=hooks)
        assert (patched - plain.run_with_hooks(tokens, fwd_hooks=hooks)).abs().max() < 1e-5
        assert (patched - fused(tokens)).abs().max() > 1e-3   # the intervention did reach the output
        mask = torch.ones_like(tokens)
        mask[0, :3] = 0   # left padding on the first row
        assert (fused(tokens, attention_mask=mask) - plain(tokens, attention_mask=mask))[:, 3:].abs().max() < 1e-5
    grads = []
    for m in (fused, plain):
        m.requires_grad_(True)
        m(tokens, return_type="loss").backward()
        grads.append(m.blocks[0].attn.W_Q.grad.clone())
    assert (grads[0] - grads[1]).abs().max() < 1e-5 * max(1.0, grads[1].abs().max().item())
