"""Analyses: pure functions (model + inputs -> numbers and figures).

Each module has pure functions a notebook can call, and a `run(model,
datamodule, out_dir, **options) -> dict[str, float]` entry that pulls its
inputs from a run's data; callbacks and analyze.py both call `run`.
"""

from interp.analyses import induction, ngram

ANALYSES = {"induction": induction.run, "ngram": ngram.run}
