"""What a prompt shows for one run, as plain data (JSON-able): the analyses' own functions do the work.

- transformers: attention weights and norm-based attention of one head (analyses.common.attention),
- every language model: residual-stream / hidden-state PCA across layers (analyses.hidden_pca, on a
  basis fitted once per run on validation activations) and top-k next tokens (analyses.topk_next),
- LSTMs: hidden states per layer (analyses.lstm_hidden); k-gram MLPs: which window slot drives each
  prediction (analyses.kgram_attribution),
- SAE runs: the features active on each token, with their dashboard when one exists,
- the arithmetic MLP: its ten inputs -> prediction, hidden layers, SAE features and the feature probe.
A view that does not fit the model carries the reason instead of data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.errors import ConfigError, InterpError, NotApplicable

PCA_ROWS = 2000         # validation activations the PCA basis is fitted on
BACKGROUND = 300        # of which are drawn grey behind the prompt
SAE_TOP = 5             # features shown per token
PROBE_ROWS = 4096       # test rows that label the arithmetic SAE's features for the feature probe
# Tokens shown for a model without a context (LSTM, k-gram): a 1 MB prompt would be ~250k, and pages
# whose figures hold every position's hidden state.
MAX_TOKENS = 1024


@dataclass
class Loaded:
    """A loaded run and what is worth keeping between prompts (the PCA basis)."""

    path: Path
    run: object                               # interp.run_dir.LoadedRun
    bases: dict | None = None                 # {hook: pca basis}
    background: dict = field(default_factory=dict)
    basis_note: str | None = None
    sae_note: str | None = None               # why a pretrained SAE given to the explorer does not fit
    probe_labels: list | None = None          # arithmetic SAE runs: each feature's ground-truth label
    stores: dict = field(default_factory=dict)  # {dictionary: interp.features.store.FeatureStore}
    rows: dict = field(default_factory=dict)    # {dictionary: the feature list's rows}
    ablation: dict | None = None                # the validation batch feature pages ablate on


class Models:
    """Loaded runs by directory, reloaded when the checkpoint changes; one prompt at a time.

    `sae`: a pretrained SAE (conf/sae/pretrained.yaml's fields: path, or release + id) given to every run
    without one of its own, where it fits the model (otherwise the SAE view says why). `roots`: a run whose
    checkpoint, config or sae/ links outside them is refused (listing.Refused) before anything is loaded."""

    def __init__(self, device: str = "cpu", keep: int = 4, sae: dict | None = None, roots: list[Path] | None = None):
        self.device, self.keep, self.sae, self.roots = device, keep, sae, roots
        self.lock = threading.Lock()
        self._cache: dict[tuple, Loaded] = {}

    def get(self, path: Path) -> Loaded:
        from interp.explorer.listing import require_inside
        from interp.run_dir import checkpoint_path
        from interp.runs import load_run

        if self.roots is not None:   # checked again here, as close to torch.load as can be
            require_inside(path, self.roots)
        ckpt = checkpoint_path(path)
        key = (str(path), ckpt.stat().st_mtime_ns)
        if key not in self._cache:
            if len(self._cache) >= self.keep:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self.with_sae(Loaded(path, load_run(path, device=self.device)))
        return self._cache[key]

    def with_sae(self, loaded: Loaded) -> Loaded:
        from interp.sae.pretrained import from_config

        if loaded.run.sae is None and self.sae:
            try:
                loaded.run.sae, _ = from_config(self.sae, model=loaded.run.model, device=self.device)
            except InterpError as e:
                loaded.sae_note = f"the pretrained SAE does not fit this model: {e}"
        return loaded


def kind_of(model) -> str:
    from transformer_lens import HookedTransformer

    from interp.models.kgram import KGramMLP

    if isinstance(model, HookedTransformer):
        return "transformer"
    if "blocks.0.hook_hidden" in model.hook_dict:
        return "lstm"
    if isinstance(model, KGramMLP):
        return "kgram"
    return "regression" if "hook_input" in model.hook_dict else "other"


def encode(prompt: str, tokenizer, n_ctx: int | None) -> tuple[torch.Tensor, str | None]:
    """Token ids [1, pos] ([eot] first, as in training), cut to the context (MAX_TOKENS for a model
    without one) with a notice."""
    from interp.analyses.common.inputs import encode_prompt

    tokens = encode_prompt(prompt, tokenizer, None)
    limit = n_ctx or MAX_TOKENS
    if tokens.shape[1] > limit:
        why = (f"the model's context is {n_ctx}" if n_ctx else
               f"the explorer shows at most {MAX_TOKENS} (this model takes any length)")
        notice = (f"the prompt is {tokens.shape[1]} tokens (with the leading [eot]) but {why}: only the first "
                  f"{limit} are shown")
        return tokens[:, :limit], notice
    return tokens, None


def attention_view(model, tokens: torch.Tensor, layer: int, head: int) -> dict:
    from interp.analyses.common.attention import attention_maps
    from interp.analyses.common.inputs import require_attention

    require_attention(model, "the attention view")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ConfigError(f"layer {layer} head {head} does not exist (layers 0..{n_layers - 1}, heads "
                          f"0..{n_heads - 1}). Fix: choose one in range.")
    weights, norms = attention_maps(model, tokens)
    return {"layer": layer, "head": head, "n_layers": n_layers, "n_heads": n_heads,
            "weights": weights[layer, head].tolist(), "norms": norms[layer, head].tolist()}


def pca_basis(loaded: Loaded, hooks: list[str]) -> None:
    """Fit each stage's PCA on validation activations once per run (as analyses.hidden_pca does)."""
    from interp.analyses.common.activations import val_activations
    from interp.analyses.hidden_pca import pca
    from interp.targets import subject_of

    if loaded.bases is not None:
        return
    try:
        acts, _, _ = val_activations(loaded.run.model, subject_of(loaded.run).datamodule, hooks, PCA_ROWS)
    except (InterpError, OSError) as e:   # data unavailable here: fit on each prompt instead
        loaded.bases, loaded.basis_note = {}, f"validation data unavailable ({e}); axes fitted on the prompt"
        return
    loaded.bases = {h: pca(a) for h, a in acts.items()}
    pick = torch.randperm(PCA_ROWS, generator=torch.Generator().manual_seed(0))
    loaded.background = {h: a[pick[pick < len(a)][:BACKGROUND]] for h, a in acts.items()}


def pca_view(loaded: Loaded, tokens: torch.Tensor) -> dict:
    from interp.analyses.common.activations import hidden_hooks, prompt_activations
    from interp.analyses.hidden_pca import pca, project

    model = loaded.run.model
    hooks = hidden_hooks(model)
    pca_basis(loaded, hooks)
    acts = prompt_activations(model, tokens, hooks)
    stages = []
    for hook in hooks:
        basis = loaded.bases.get(hook)
        if basis is None:
            if len(acts[hook]) < 3:
                raise NotApplicable("PCA of the prompt alone needs at least 3 tokens")
            basis = pca(acts[hook])
        background = loaded.background.get(hook)
        stages.append({"hook": hook, "xy": project(acts[hook], basis).tolist(),
                       "ratio": basis["ratio"].tolist(),
                       "background": project(background, basis).tolist() if background is not None else []})
    return {"stages": stages, "note": loaded.basis_note}


def topk_view(model, tokens: torch.Tensor, tokenizer, k: int) -> list[dict]:
    from interp.analyses.topk_next import topk_next

    top_p, top_i, _ = topk_next(model, tokens, k)
    inputs = tokenizer.decode_tokens(tokens[0])
    return [{"input": inputs[p], "actual_next": inputs[p + 1] if p + 1 < len(inputs) else None,
             "top": [[s, round(v, 4)] for s, v in zip(tokenizer.decode_tokens(top_i[p]), top_p[p].tolist())]}
            for p in range(len(inputs))]


def sae_view(loaded: Loaded, inputs: torch.Tensor, labels: list[str]) -> dict:
    """Top active features of the run's dictionary per token (or per input row); each links to its
    feature page (a run of several dictionaries: the search page shows them all)."""
    from interp.sae.harvest import feature_acts
    from interp.sae.sites import sites_of

    found = dictionaries(loaded)
    if not found:
        raise NotApplicable(loaded.sae_note or "this run has no SAE (train one with task=sae base_run=<this run>, "
                            "or give one to every run: analyze.py serve --sae <SAELens folder>)")
    name, sae = next(iter(found.items()))
    feats = feature_acts(loaded.run.model, sae, inputs).float().cpu()
    feats = feats[0] if feats.ndim == 3 else feats   # one prompt: [pos, d_sae]; input rows: [rows, d_sae]
    top = feats.topk(min(SAE_TOP, feats.shape[-1]), dim=-1)
    rows = [{"token": token, "n_active": n,
             "features": [{"feature": f, "act": round(a, 4)} for f, a in zip(ids, values) if a > 0]}
            for token, values, ids, n in zip(labels, top.values.tolist(), top.indices.tolist(),
                                              (feats > 0).sum(-1).tolist())]
    note = f" (the first of {len(found)} dictionaries; Search shows them all)" if len(found) > 1 else ""
    return {"hook": sites_of(sae).describe() + note, "label": name, "d_sae": feats.shape[-1], "tokens": rows}


def lstm_view(model, tokens: torch.Tensor) -> list[list[list[float]]]:
    from interp.analyses.lstm_hidden import lstm_hidden_states

    return [h.T.tolist() for h in lstm_hidden_states(model, tokens)]   # per layer [neuron, pos]


def kgram_view(model, tokens: torch.Tensor, tokenizer) -> dict:
    from interp.analyses.kgram_attribution import gradient_attributions, slot_names

    with torch.no_grad():
        predicted = model(tokens).argmax(-1)
    slot = gradient_attributions(model, tokens, predicted)[0][0].abs()
    share = slot / slot.sum(-1, keepdim=True).clamp(min=1e-12)
    return {"slots": slot_names(model.k), "share": share.T.tolist(),
            "predicted": tokenizer.decode_tokens(predicted[0])}


def guarded(fn, *args) -> dict:
    """{"data": ...} or {"reason": why the view does not fit}."""
    try:
        return {"data": fn(*args)}
    except (NotApplicable, ConfigError) as e:
        return {"reason": str(e)}


def prompt_views(loaded: Loaded, prompt: str, *, layer: int = 0, head: int = 0, k: int = 5) -> dict:
    """Every view of a language-model run for `prompt`."""
    from interp.models import context_length

    run = loaded.run
    model, tok = run.model, run.tokenizer
    if tok is None:
        raise NotApplicable("this model reads rows of numbers, not text: give its inputs instead")
    tokens, notice = encode(prompt, tok, context_length(model))
    tokens = tokens.to(next(model.parameters()).device)
    labels = tok.decode_tokens(tokens[0])
    kind = kind_of(model)
    not_lstm = f"hidden states of an LSTM; this model is a {kind}"
    not_kgram = f"window attribution of a k-gram MLP; this model is a {kind}"
    return {
        "kind": kind, "tokens": labels, "notice": notice,
        "attention": guarded(attention_view, model, tokens, layer, head),
        "pca": guarded(pca_view, loaded, tokens),
        "topk": guarded(topk_view, model, tokens, tok, k),
        "sae_features": guarded(sae_view, loaded, tokens, labels),
        "lstm": guarded(lstm_view, model, tokens) if kind == "lstm" else {"reason": not_lstm},
        "kgram": guarded(kgram_view, model, tokens, tok) if kind == "kgram" else {"reason": not_kgram},
    }


def parse_row(text: str, model) -> torch.Tensor:
    """The arithmetic MLP's input row from text ("8 9 5 1 3 2 9 4 7 1" or with commas), checked as the
    feature_probe analysis checks its x=."""
    from interp.analyses.feature_probe import parse_input

    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = text
    return parse_input(values, model.n_inputs, model.n_classes)


def probe_view(loaded: Loaded, x: torch.Tensor) -> dict:
    """Seed S4's feature probe (analyses.feature_probe) for one row; the features' ground-truth labels
    are scored once per run on its test rows."""
    from interp.analyses import alignment, feature_probe
    from interp.targets import subject_of

    sae, model = loaded.run.sae, loaded.run.model
    if sae is None:
        raise NotApplicable(loaded.sae_note or "the feature probe needs an SAE run on the arithmetic MLP")
    if loaded.probe_labels is None:
        test_x = alignment.require_arithmetic(model, subject_of(loaded.run).datamodule, "the feature probe")
        test_x = test_x[:PROBE_ROWS]
        loaded.probe_labels = alignment.score(alignment.feature_activations(model, sae, test_x),
                                              alignment.task_variables(test_x)).unit_labels()
    p = feature_probe.probe(model, sae, x, loaded.probe_labels, SAE_TOP)
    return {**p, "report": feature_probe.report_text(p)}


def row_views(loaded: Loaded, text: str) -> dict:
    """The arithmetic MLP on one input row: prediction, the task's answer, hidden layers, SAE features."""
    from interp.analyses.common.activations import hidden_hooks, prompt_activations

    model = loaded.run.model
    if kind_of(model) != "regression":
        raise NotApplicable("input rows are for the arithmetic MLP; this model reads text")
    x = parse_row(text, model)
    n = (model.n_inputs - 2) // 2
    col1, ptr1, col2, ptr2 = x[0, :n], x[0, n], x[0, n + 1:2 * n + 1], x[0, 2 * n + 1]
    hooks = hidden_hooks(model)[1:]
    with torch.no_grad():
        prediction = model(x.to(next(model.parameters()).device)).item()
    hidden = prompt_activations(model, x, hooks)
    return {"kind": "regression", "inputs": x[0].tolist(), "prediction": prediction,
            "answer": abs(int(col1[ptr1]) - int(col2[ptr2])),
            "hidden": {h: a.tolist() for h, a in hidden.items()},
            "sae_features": guarded(sae_view, loaded, x, ["row"]),
            "probe": guarded(probe_view, loaded, x)}


def dictionaries(loaded: Loaded) -> dict:
    """{label: dictionary} of a loaded run: its several (`saes`, labelled as in <run>/saes/), or its one
    (labelled by its hook, as a one-dictionary run of several would be)."""
    from interp.sae.dictionaries import label
    from interp.sae.sites import sites_of

    run = loaded.run
    return dict(run.saes) if run.saes else {label(sites_of(run.sae)): run.sae} if run.sae is not None else {}
