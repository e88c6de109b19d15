"""Analyses: pure functions (model + inputs -> numbers and figures).

Each module has pure functions a notebook can call, and a `run(model,
datamodule, out_dir, **options) -> dict[str, float]` entry that pulls its
inputs from a run's data; callbacks and analyze.py both call `run`. An
analysis that does not fit a model raises `inputs.NotApplicable(reason)`.
"""

from interp.analyses import (
    attention_grid,
    attention_html,
    bigram,
    category_loss,
    composition,
    hidden_pca,
    induction,
    kgram_attribution,
    logit_attribution,
    lstm_hidden,
    neurons,
    ngram,
    patching,
    topk_next,
)

_MODULES = (attention_grid, attention_html, bigram, category_loss, composition, hidden_pca, induction,
            kgram_attribution, logit_attribution, lstm_hidden, neurons, ngram, patching, topk_next)
ANALYSES = {m.__name__.rsplit(".", 1)[1]: m.run for m in _MODULES}
