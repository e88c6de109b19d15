"""Transformer-circuit analyses on tiny in-process models: known answers, figures, and bad input."""

import json
import re
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import REPO
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.analyses import (
    attention_grid,
    attention_html,
    composition,
    induction,
    logit_attribution,
    patching,
)
from interp.analyses.induction import diagonal_score, head_scores, icl_score
from interp.analyses.runner import run_analysis, split_options
from interp.data import build_datamodule
from interp.errors import ConfigError, NotApplicable
from interp.models.lstm import LSTMLM
from interp.subject import Subject

VOCAB, N_CTX = 512, 32
DATA = {"name": "induction", "vocab_size": VOCAB, "seq_len": N_CTX, "token_low": 256, "token_high": 511,
        "min_repeat": 4, "max_repeat": 12, "num_train": 64, "num_val": 16, "batch_size": 8}


def tiny(n_layers=2, seed=0, **kw) -> HookedTransformer:
    fields = dict(n_layers=n_layers, d_model=32, n_heads=4, d_head=8, n_ctx=N_CTX, d_vocab=VOCAB, attn_only=True,
                  normalization_type="LN", positional_embedding_type="shortformer", seed=seed) | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**fields))
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():   # non-trivial LN weights and biases too, so nothing sums by accident
        p.data.normal_(0, 0.3, generator=g)
    return model.eval()


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def dm():
    dm = build_datamodule(DATA, seed=0)
    dm.setup("validate")
    return dm


# --- induction / previous-token / duplicate-token scores on hand-set patterns -------------------------

def _pattern(length: int, key_of_query) -> torch.Tensor:
    """[1, 1, T, T] for [BOS] + r + r: query q attends fully to key_of_query(q), or to BOS if that is None."""
    T = 1 + 2 * length
    p = torch.zeros(1, 1, T, T)
    for q in range(T):
        k = key_of_query(q)
        p[0, 0, q, 0 if k is None or k < 0 else k] = 1.0
    return p


def test_answers_are_new_words_unless_answer_space_is_false():
    from interp.analyses.logit_attribution import answer_id
    from interp.data.tokenizer import Tokenizer

    tok = Tokenizer(50257)   # GPT-2 BPE: a word's leading space is part of its token
    assert answer_id(tok, "Tower", "The Eiffel") == answer_id(tok, " Tower", "The Eiffel") == \
        tok.encode("The Eiffel Tower")[-1]
    assert answer_id(tok, "el", "The Eiff", space=False) == tok.encode("The Eiffel")[-1]   # mid-word
    assert answer_id(tok, "el", "The Eiff") == tok.encode(" el")[0] != tok.encode("The Eiffel")[-1]
    names = ["logit_attribution", "patching", "ablate", "attribute"]
    assert all(opts == {"answer_space": False} for opts in split_options(names, {"answer_space": False}).values())


def test_perfect_heads_score_one_and_uniform_scores_low():
    L = 6
    second = 1 + L
    induction_head = _pattern(L, lambda q: q - L + 1 if q >= second else None)
    previous_head = _pattern(L, lambda q: q - 1)
    duplicate_head = _pattern(L, lambda q: q - L if q >= second else None)
    uniform = torch.tril(torch.ones(1 + 2 * L, 1 + 2 * L))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None]
    assert diagonal_score(induction_head, 1 - L, second).item() == pytest.approx(1.0)
    assert diagonal_score(previous_head, -1, 1).item() == pytest.approx(1.0)
    assert diagonal_score(duplicate_head, -L, second).item() == pytest.approx(1.0)
    for offset, first in ((1 - L, second), (-1, 1), (-L, second)):
        assert diagonal_score(uniform, offset, first).item() < 0.3
    assert diagonal_score(previous_head, 1 - L, second).item() == 0.0   # a previous-token head is no induction head


def test_head_scores_read_the_models_patterns():
    """A hook forces head 0 of layer 1 into a perfect induction pattern: head_scores finds it."""
    model, L = tiny(), 6
    forced = _pattern(L, lambda q: q - L + 1 if q >= 1 + L else None)[0, 0]

    def force(pattern, hook):
        pattern[:, 0] = forced
        return pattern

    tokens = torch.cat([torch.full((2, 1), VOCAB - 1), torch.arange(256, 256 + L).repeat(2, 2)], dim=1)
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", force)]):
        scores = head_scores(model, tokens)
    assert scores["induction"][1, 0].item() == pytest.approx(1.0)
    assert scores["induction"][1, 1:].max() < 0.9 and scores["duplicate_token"][1, 0] < 1e-6


def test_icl_score_is_late_minus_early():
    loss = torch.linspace(4.0, 2.0, 100)   # loss falls along the context: in-context learning
    out = icl_score(loss, torch.ones(100, dtype=torch.long))
    assert out["icl/score"] == pytest.approx(out["icl/loss_late"] - out["icl/loss_early"])
    assert out["icl/loss_early"] == pytest.approx(4 - 2 * 9.5 / 99, abs=1e-4)   # positions 5..14
    assert out["icl/score"] < -1.4
    assert icl_score(loss, torch.zeros(100, dtype=torch.long)) == {}   # nothing scored there: no number


# --- direct logit attribution ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(attn_only=False, d_mlp=64, act_fn="gelu",
                                              positional_embedding_type="standard"), dict(normalization_type=None)])
def test_dla_components_sum_to_the_logits(kw):
    model = tiny(**kw)
    g = torch.Generator().manual_seed(1)
    tokens, answer, wrong = (torch.randint(0, VOCAB, (3, 12), generator=g) for _ in range(3))
    logits, cache = model.run_with_cache(tokens)
    picked = lambda t: logits.gather(-1, t[..., None])[..., 0]   # noqa: E731
    attrs, labels = logit_attribution.direct_logit_attribution(model, cache, answer)
    assert len(labels) == len(attrs) and labels[0] == "embed" and labels[-1] == "bias" and "L1H3" in labels
    torch.testing.assert_close(attrs.sum(0), picked(answer), atol=1e-4, rtol=1e-4)
    attrs, _ = logit_attribution.direct_logit_attribution(model, cache, answer, wrong)
    torch.testing.assert_close(attrs.sum(0), picked(answer) - picked(wrong), atol=1e-4, rtol=1e-4)
    attrs, labels = logit_attribution.direct_logit_attribution(model, cache, answer, center=True)
    torch.testing.assert_close(attrs.sum(0), picked(answer) - logits.mean(-1), atol=1e-4, rtol=1e-4)
    # Splitting each head by source position changes nothing in the total.
    direction, _ = logit_attribution.unembed_directions(model, answer[0, 9], center=True)
    by_source = logit_attribution.head_source_attribution(model, cache, 9, direction)
    heads = attrs[labels.index("L0H0"):labels.index("L0H0") + 8, 0, 9].view(2, 4)
    torch.testing.assert_close(by_source.sum(-1), heads, atol=1e-5, rtol=1e-5)


# --- activation patching ------------------------------------------------------------------------------

def test_patching_clean_into_clean_recovers_the_clean_metric_everywhere():
    model = tiny()
    clean, corrupted, answer, wrong = patching.induction_pair(4, 6, 256, 511, seed=0, bos_id=VOCAB - 1)
    assert (clean != corrupted).sum(1).tolist() == [1, 1, 1, 1] and (answer != wrong).all()
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean)
        clean_value = patching.logit_diff(clean_logits, answer, wrong).item()
        corrupted_value = patching.logit_diff(model(corrupted), answer, wrong).item()
    metric = patching.normalised_metric(answer, wrong, clean_value, corrupted_value)
    assert metric(clean_logits).item() == pytest.approx(1.0)
    grids = patching.patching_grids(model, clean, clean_cache, metric)   # "corrupted" run = the clean one
    assert grids["resid_pre"].shape == (2, clean.shape[1]) and grids["heads"].shape == (2, 4)
    for grid in grids.values():
        torch.testing.assert_close(grid, torch.ones_like(grid), atol=1e-5, rtol=0)
    # And patching the clean residual stream at the corrupted position before layer 0 restores it fully.
    restored = patching.patching_grids(model, corrupted, clean_cache, metric)["resid_pre"]
    assert restored[0, 6].item() == pytest.approx(1.0, abs=1e-5)
    assert restored[0, 1].item() == pytest.approx(0.0, abs=1e-5)


# --- composition: copying and composition scores with hand-set weights --------------------------------

def _set_ov(model, layer, head, read, write, sign=1.0):
    """Head reads residual dims `read` and writes them to dims `write` (identity-like OV)."""
    attn = model.blocks[layer].attn
    attn.W_V.data[head] = torch.eye(model.cfg.d_model)[:, read]
    attn.W_O.data[head] = sign * torch.eye(model.cfg.d_model)[write, :]


def test_copying_score_of_identity_ov_is_one_and_of_negated_is_minus_one():
    model = tiny(n_layers=1, normalization_type=None)
    model.unembed.W_U.data = model.embed.W_E.data.T.clone()   # W_U = W_E^T: W_E W_OV W_U is then PSD for OV ~ I
    dims = list(range(8))
    _set_ov(model, 0, 0, dims, dims)
    _set_ov(model, 0, 1, dims, dims, sign=-1.0)
    scores = composition.copying_scores(model)
    assert scores[0, 0].item() == pytest.approx(1.0, abs=1e-4)
    assert scores[0, 1].item() == pytest.approx(-1.0, abs=1e-4)
    assert -1 <= scores.min() and scores.max() <= 1


def test_v_composition_of_aligned_heads_is_high_and_of_orthogonal_ones_zero():
    model = tiny(normalization_type=None)
    a, b = list(range(8)), list(range(8, 16))
    _set_ov(model, 0, 0, a, a)        # L0H0 writes into dims a
    _set_ov(model, 1, 0, a, b)        # L1H0 reads dims a: composes
    _set_ov(model, 1, 1, b, b)        # L1H1 reads dims b: orthogonal to what L0H0 writes
    v = composition.all_composition_scores(model)["V"]
    assert v[0, 0, 1, 0].item() == pytest.approx(8 ** -0.5, abs=1e-4)   # ||I_8||_F / (||I_8||_F ||I_8||_F)
    assert v[0, 0, 1, 1].item() == pytest.approx(0.0, abs=1e-6)
    assert v[1].abs().sum() == 0   # a later head never composes into an earlier one
    assert 0 < composition.random_baseline(32, 8) < 0.5


# --- run(): figures, HTML, options and bad input ---------------------------------------------------

def test_runs_write_figures_and_numbers(dm, tmp_path):
    model = tiny()
    outputs = {
        attention_grid: ["block_0_grid.png", "block_1_grid.png"],
        attention_html: ["attention.html"],
        induction: ["induction.png", "duplicate_token.png", "loss_by_position.png"],
        logit_attribution: ["dla_components.png", "dla_head_sources.png"],
        patching: ["patching.png"],
        composition: ["ov_circuits.png", "qk_circuits.png", "composition.png"],
    }
    names = [module.__name__.rsplit(".", 1)[-1] for module in outputs]
    # One option set for all, as analyze.py hands it out: each analysis gets the options it takes.
    options = split_options(names, dict(min_gap=0.0, max_positions=12, n_tokens=8, n_batch=8))
    for name, files in zip(names, outputs.values()):
        results = run_analysis(name, Subject(model, dm), tmp_path / name, options[name])
        assert all(isinstance(v, float) for v in results.values()), name
        assert json.loads((tmp_path / name / "results.json").read_text()) == pytest.approx(results)
        for f in files:
            assert (tmp_path / name / f).stat().st_size > 1000, (name, f)
    induction_results = induction.run(model, dm, tmp_path / "i2", n_batch=4)
    assert {"induction/L1H0", "previous_token/L0H0", "duplicate_token/L1H3", "icl/score"} <= set(induction_results)
    html = (tmp_path / "attention_html" / "attention.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", html) and "http://" not in html and "https://" not in html
    assert '"norms"' in html and "onmouseenter" in html


def test_prompt_options(dm, tmp_path):
    model = tiny()
    r = logit_attribution.run(model, dm, tmp_path, prompt="The capital of France is", answer="Paris", wrong="Rome")
    assert r["metric"] == pytest.approx(sum(v for k, v in r.items() if k.startswith("dla/")), abs=1e-4)
    r = patching.run(model, dm, tmp_path, clean="The cat sat", corrupted="The dog sat", answer="down", wrong="up",
                     min_gap=0.0)
    assert "resid_pre/L1/first_changed_pos" in r and "heads/L1H3" in r
    assert "heads/L0H0" in patching.run(model, dm, tmp_path, answer="Paris", min_gap=0.0)   # answer= is for DLA
    with pytest.raises(ConfigError, match="prompt="):
        logit_attribution.run(model, dm, tmp_path, answer="Paris")   # an answer to which prompt?
    with pytest.raises(ConfigError, match="equal lengths"):
        patching.run(model, dm, tmp_path, clean="The cat sat", corrupted="The hippopotamus sat", answer="a", wrong="b")


@pytest.mark.parametrize("prompt, message", [("", "empty"), ("   ", "empty"), ("word " * 40, "n_ctx=32")])
def test_bad_prompts_are_refused(dm, tmp_path, prompt, message):
    for module in (attention_grid, attention_html, logit_attribution, composition):
        with pytest.raises(ConfigError, match=message):
            module.run(tiny(), dm, tmp_path, prompt=prompt)


def test_not_applicable_to_lstm_and_0_layer(dm, tmp_path):
    lstm = LSTMLM(d_vocab=VOCAB, d_embed=8, d_hidden=8, n_layers=1)
    for model in (lstm, tiny(n_layers=0)):
        for module in (attention_grid, attention_html, logit_attribution, patching, composition):
            with pytest.raises(NotApplicable):
                module.run(model, dm, tmp_path)
    assert set(induction.run(lstm, dm, tmp_path)) == {"icl/loss_early", "icl/loss_late", "icl/score"}


# --- analyze.py: unknown name, NotApplicable as a skip line, a too-long prompt --------------------------

def _fake_run(path, model_cfg: dict):
    """A run directory as train.py leaves it, for a model that was never trained (no training needed here)."""
    from interp.models import build_model

    (path / "checkpoints").mkdir(parents=True)
    config = {"model": model_cfg, "data": DATA, "seed": 0, "task": {"name": "lm"}, "run_meta": {"choices": {}}}
    state = {f"model.{k}": v for k, v in build_model(model_cfg).state_dict().items()}
    torch.save({"hyper_parameters": {"config": config}, "state_dict": state, "global_step": 0},
               path / "checkpoints" / "last.ckpt")
    (path / "config.yaml").write_text("{}\n")
    return path


def _analyze_cli(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)


def _analyze_in_process(capsys, **overrides) -> tuple[int, str, str]:
    """analyze.py's main on a composed config, without a new interpreter: (exit code, stdout, stderr)."""
    from omegaconf import OmegaConf

    argv, sys.argv = sys.argv, sys.argv[:1]   # analyze.py rewrites sys.argv on import
    sys.path.insert(0, str(REPO))
    try:
        import analyze
    finally:
        sys.argv = argv
        sys.path.remove(str(REPO))
    cfg = OmegaConf.load(REPO / "conf" / "analyze.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    try:
        analyze.main(OmegaConf.merge(cfg, overrides))   # hydra.main passes a given config straight through
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_unknown_analysis_and_too_long_prompt(tmp_path, capsys):
    code, _, err = _analyze_in_process(capsys, run=str(tmp_path), analysis=["patching", "nope"])
    assert code == 2 and "nope" in err and "attention_grid" in err and "logit_attribution" in err
    tf = _fake_run(tmp_path / "tf", {"arch": "transformer", "kind": "lm", "n_layers": 1, "d_model": 16, "n_heads": 2,
                                     "d_head": 8, "attn_only": True, "n_ctx": N_CTX, "d_vocab": VOCAB})
    code, _, err = _analyze_in_process(capsys, run=str(tf), analysis="attention_grid", prompt="word " * 40)
    assert code == 2 and "n_ctx=32" in err and "Fix" in err
    code, _, err = _analyze_in_process(capsys, run=str(tf), analysis="attention_grid", prompt="")
    assert code == 2 and "empty" in err


def test_cli_not_applicable_prints_a_skip_line(tmp_path, train_env):
    lstm = _fake_run(tmp_path / "lstm", {"arch": "lstm", "kind": "lm", "d_vocab": VOCAB, "d_embed": 8,
                                         "d_hidden": 8, "n_layers": 1})
    proc = _analyze_cli(train_env, f"run={lstm}", "analysis=[attention_grid,composition,induction]")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "skipped attention_grid: attention_grid needs a transformer" in proc.stdout
    assert "skipped composition:" in proc.stdout and "icl/score" in proc.stdout   # the others still ran
