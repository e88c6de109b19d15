"""Steering, ablation and attribution on our transformers and on a tiny real GPT-2 (offline)."""

import json

import pytest
import torch
from test_features_dashboard import D_SAE, DATA, HOOK, tiny_model, tiny_sae
from tiny_gpt2 import D_MODEL as GPT2_D_MODEL
from tiny_gpt2 import make_tiny_gpt2

from interp.analyses.runner import run_analysis
from interp.data import build_datamodule
from interp.errors import ConfigError
from interp.features.interventions import (
    ablation_effect,
    attribute,
    steer_generate,
    steered_logits,
)
from interp.models.gpt2 import load_gpt2
from interp.subject import Subject


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def dm():
    dm = build_datamodule(DATA, seed=0)
    dm.setup("validate")
    return dm


@pytest.fixture(scope="module")
def ours():
    return tiny_model(), tiny_sae()


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    model = load_gpt2(local_dir=str(make_tiny_gpt2(tmp_path_factory.mktemp("gpt2"), tokenizer=False)))
    return model, tiny_sae(hook="blocks.1.hook_resid_pre", d_in=GPT2_D_MODEL, d_sae=4 * GPT2_D_MODEL)


TOKENS = torch.tensor([[0, 300, 301, 302, 300, 301, 302, 300]])


@pytest.mark.parametrize("which", ["ours", "gpt2"])
def test_steering_with_scale_0_leaves_the_logits_identical(which, request):
    model, sae = request.getfixturevalue(which)
    clean = model(TOKENS)
    assert torch.equal(steered_logits(model, sae, 5, 0.0, TOKENS), clean)
    steered = steered_logits(model, sae, 5, 8.0, TOKENS)
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])
    start = layer + 1 if sae.cfg.metadata.hook_name.endswith("resid_post") else layer
    _, cache = model.run_with_cache(TOKENS, names_filter=sae.cfg.metadata.hook_name)
    direct = model(cache[sae.cfg.metadata.hook_name] + 8.0 * sae.W_dec[5], start_at_layer=start)
    assert not torch.allclose(steered, clean) and torch.allclose(steered, direct, atol=1e-5)
    without, with_ = steer_generate(model, sae, 5, 0.0, TOKENS[0].tolist(), 6, stop_id=-1)
    assert without == with_ and len(without) == 6


@pytest.mark.parametrize("which", ["ours", "gpt2"])
def test_attribution_sums_to_grad_times_activation(which, request):
    model, sae = request.getfixturevalue(which)
    out = attribute(model, sae, TOKENS, answer=301)
    assert out["metric"] == pytest.approx(model(TOKENS)[0, -1, 301].item(), abs=1e-5)   # the clean forward
    assert torch.allclose(out["attr"].sum(-1) + out["rest"], out["grad_dot_x"], atol=1e-4)
    assert out["attr"].abs().sum() > 0


def test_attribution_equals_ablation_where_the_model_is_linear_after_the_hook():
    """One layer, no final norm, SAE on the last residual: the logit is linear in the features,
    so activation × gradient is exactly the logit drop when the feature is ablated."""
    model, sae = tiny_model(n_layers=1, normalization_type=None), tiny_sae()
    out = attribute(model, sae, TOKENS, answer=301)
    per_feature = out["attr"].sum(0)
    fired = per_feature.nonzero().flatten()
    assert len(fired) >= 3
    for f in fired[:5].tolist():
        effect = ablation_effect(model, sae, [f], TOKENS, torch.full_like(TOKENS, 301))
        drop = effect["clean_logits"][0, -1, 301] - effect["ablated_logits"][0, -1, 301]
        assert drop.item() == pytest.approx(per_feature[f].item(), abs=1e-4)


def test_ablating_a_feature_that_never_fires_changes_nothing(ours):
    model, sae = ours
    acts = sae.encode(model.run_with_cache(TOKENS, names_filter=HOOK)[1][HOOK])
    silent = int((acts.amax((0, 1)) == 0).nonzero()[0])
    effect = ablation_effect(model, sae, [silent], TOKENS, TOKENS)
    assert torch.equal(effect["clean_logits"], effect["ablated_logits"])   # the error term keeps the rest


def test_analyses_write_texts_and_numbers(ours, dm, tmp_path):
    model, sae = ours
    subject = Subject(model, dm, sae)
    steer = run_analysis("steer", subject, tmp_path / "steer", {"feature": 5, "scale": 0.0, "max_new_tokens": 4})
    texts = json.loads((tmp_path / "steer" / "steer.json").read_text())
    assert texts["with"] == texts["without"] and steer["tokens_changed"] == 0 and abs(steer["next_token_kl"]) < 1e-6
    prompt = dm.tokenizer.decode([300, 301, 302, 300, 301])
    ablate = run_analysis("ablate", subject, tmp_path / "ablate", {"feature": 5, "n_batches": 1, "prompt": prompt,
                                                                   "answer": dm.tokenizer.decode([302])})
    assert ablate["loss_delta"] == pytest.approx(ablate["loss_ablated"] - ablate["loss_clean"])
    attr = run_analysis("attribute", subject, tmp_path / "attr", {"prompt": prompt, "answer": dm.tokenizer.decode([302]),
                                                                  "n_top": 3})
    assert attr["decomposition_residual"] < 1e-4 and len([k for k in attr if k.endswith("/ablation_drop")]) == 3
    assert (tmp_path / "attr" / "attribute.md").read_text().count("\n| ") == 4


def test_bad_input(ours, dm, tmp_path):
    model, sae = ours
    for name, options in (("steer", {"feature": D_SAE}), ("ablate", {"feature": 10 ** 6})):
        with pytest.raises(ConfigError, match=rf"has {D_SAE} features"):
            run_analysis(name, Subject(model, dm, sae), tmp_path / name, options)
    with pytest.raises(ConfigError, match="needs a feature"):
        run_analysis("steer", Subject(model, dm, sae), tmp_path / "s", {})
    arithmetic = build_datamodule({"name": "arithmetic", "num_train": 64, "num_val": 16, "num_test": 16, "batch_size": 16}, seed=0)
    with pytest.raises(ConfigError, match="arithmetic MLP"):
        run_analysis("steer", Subject(model, arithmetic, sae), tmp_path / "a", {"feature": 1})
    with pytest.raises(ConfigError, match="answer="):
        run_analysis("attribute", Subject(model, dm, sae), tmp_path / "t", {"prompt": "a b"})
    assert not any(tmp_path.iterdir())   # nothing half-written
