"""Analyses: pure functions (model + inputs -> numbers and figures).

Each module has pure functions a notebook can call, and a `run(model,
datamodule, out_dir, **options) -> dict[str, float]` entry that pulls its
inputs from a run's data; callbacks and analyze.py both call `run`.
"""

from interp.analyses import induction, ngram
from interp.analyses import bigram, hidden_pca, kgram_attribution, lstm_hidden, neurons, topk_next
from interp.analyses import attention_grid, attention_html, composition, logit_attribution, patching

ANALYSES = {"induction": induction.run, "ngram": ngram.run}
ANALYSES.update({"lstm_hidden": lstm_hidden.run, "neurons": neurons.run, "kgram_attribution": kgram_attribution.run,
                 "bigram": bigram.run, "hidden_pca": hidden_pca.run, "topk_next": topk_next.run})
ANALYSES.update({"attention_grid": attention_grid.run, "attention_html": attention_html.run,
                 "composition": composition.run, "logit_attribution": logit_attribution.run, "patching": patching.run})
