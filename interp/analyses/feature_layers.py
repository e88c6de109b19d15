"""Seed S1's comparison of SAEs across layers: the `features` study on each SAE, then the category x SAE
specialist-score heatmap, the strongest activations, the most frequent feature's coverage and the
specialists found per SAE (PNG + one offline HTML page), summary.md, and every number in results.json.

analyze.py gives it several SAEs: a sweep directory (`run=multirun/<date>/<time>_<name>`), a list of
runs (`run=[a,b]`) or pretrained ids (`sae=pretrained sae.id=[...]`); `compare` does the work. Given one
SAE run it compares that one alone.
"""

from __future__ import annotations

from pathlib import Path

from interp.analyses.common.inputs import require_lm
from interp.features import layers
from interp.features.extract import hook_of
from interp.features.probes import load_probes
from interp.features.study import study
from interp.run_dir import RESULTS_FILE, write_json


def labels_for(saes: list) -> list[str]:
    """Each SAE's hook, with `#<n>` added where several SAEs read the same hook."""
    hooks = [hook_of(sae) for sae in saes]
    return [h if hooks.count(h) == 1 else f"{h}#{hooks[:i + 1].count(h)}" for i, h in enumerate(hooks)]


def compare(subjects: list, out_dir, *, probes: str = "builtin", k: int = 10, min_score: int = 1,
            max_tokens: int = 64, per_category: int = 50) -> dict:
    """subjects: interp.subject.Subject with an SAE each (any order: sorted by depth here)."""
    subjects = sorted(subjects, key=lambda s: layers.layer_of(hook_of(s.sae)))
    studies = {}
    for label, subject in zip(labels_for([s.sae for s in subjects]), subjects):
        require_lm(subject.datamodule, "feature_layers")
        p = load_probes(probes, subject.datamodule, per_category)
        studies[label] = study(subject.model, subject.sae, subject.datamodule.tokenizer, p, k=k,
                               min_score=min_score, max_tokens=max_tokens)
    summary = layers.summary(studies)
    layers.write(summary, out_dir)
    write_json(Path(out_dir) / RESULTS_FILE, summary)   # analyze.py's results.json: every number
    return summary


def run(model, datamodule, out_dir, *, sae, probes: str = "builtin", k: int = 10, min_score: int = 1,
        max_tokens: int = 64, per_category: int = 50) -> dict[str, float]:
    from interp.subject import Subject

    # One SAE (e.g. from a training callback): the runner then replaces results.json with these metrics.
    s = compare([Subject(model, datamodule, sae)], out_dir, probes=probes, k=k, min_score=min_score,
                max_tokens=max_tokens, per_category=per_category)
    label = s["saes"][0]
    return {"specialists_found": s["specialists_found"][label],
            **{f"specialist_score/{c}": s["scores"][c][label] for c in s["categories"]}}
