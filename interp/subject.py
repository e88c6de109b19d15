"""What an analysis looks at: a model, the data it was trained on and, for SAE runs, the SAE (and
every dictionary of a run of several); for an analysis that compares dictionaries (feature_layers),
the Subjects it compares.

Tasks (at the end of training) and loaded runs (analyze.py) produce one;
interp.analyses.runner passes its fields to an analysis. A field beyond model and
datamodule reaches the analyses that name it as a keyword-only argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Subject:
    model: Any                 # a transformer_lens HookedRootModule in eval mode
    datamodule: Any            # the model's data (set up for validation); its tokenizer for LMs
    sae: Any | None = None     # an sae_lens.SAE reading `model` at sae.cfg.metadata.hook_name
    compared: tuple[Subject, ...] = ()   # several dictionaries, each on its own model (analyze.py run=<sweep>)
    dictionaries: tuple = ()   # every dictionary of one run on `model` (an attribution graph's transcoders)
