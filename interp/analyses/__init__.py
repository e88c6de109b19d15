"""Analyses: pure functions (model + inputs -> numbers and figures).

Each analysis module has pure functions a notebook can call, and an entry

    run(model, datamodule, out_dir, *, <options with defaults>) -> dict[str, float]

that pulls its inputs from a run's data. Analyses of an SAE also take a keyword-only
`sae` (an sae_lens.SAE reading `model` at its hook), which the runner supplies.
`interp.analyses.runner.run_analysis` is the one way they are run, by the training
callback and by analyze.py alike. An analysis that does not fit a model raises
`interp.errors.NotApplicable(reason)`. Helpers shared by analyses live in `common/`.
"""

from interp.analyses import (
    ablate,
    alignment,
    attention_grid,
    attention_html,
    attribute,
    attribution_graph,
    bigram,
    category_loss,
    circuit,
    composition,
    dashboard,
    feature_layers,
    feature_probe,
    features,
    hidden_pca,
    highlight,
    induction,
    kgram_attribution,
    logit_attribution,
    lstm_hidden,
    neurons,
    ngram,
    patching,
    steer,
    topk_next,
)

_MODULES = (ablate, alignment, attention_grid, attention_html, attribute, attribution_graph, bigram, category_loss,
            circuit, composition, dashboard, feature_layers, feature_probe, features, hidden_pca, highlight, induction, kgram_attribution,
            logit_attribution, lstm_hidden, neurons, ngram, patching, steer, topk_next)
ANALYSES = {m.__name__.rsplit(".", 1)[1]: m.run for m in _MODULES}
