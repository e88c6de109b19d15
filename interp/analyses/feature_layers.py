"""Seed S1's comparison of SAEs across layers: the `features` study on each SAE, then the category x SAE
specialist-score heatmap, the strongest activations, the most frequent feature's coverage and the
specialists found per SAE (PNG + one offline HTML page), summary.md, and every number in summary.json.

analyze.py gives it several SAEs as `Subject.compared` (interp.targets.compared_runs: a sweep
directory `run=multirun/<date>/<time>_<name>`, a list of runs `run=[a,b]`, or pretrained ids
`sae=pretrained sae.id=[...]`); a training callback gives it its one SAE, compared alone.
"""

from __future__ import annotations

from pathlib import Path

from interp.analyses.common.inputs import require_lm
from interp.features import layers
from interp.features.extract import hook_of
from interp.features.probes import load_probes
from interp.features.study import study
from interp.run_dir import write_json

SUMMARY_FILE = "summary.json"   # every number of the comparison (results.json: the runner's flat metrics)


def labels_for(saes: list) -> list[str]:
    """Each SAE's hook, with `#<n>` added where several SAEs read the same hook."""
    hooks = [hook_of(sae) for sae in saes]
    return [h if hooks.count(h) == 1 else f"{h}#{hooks[:i + 1].count(h)}" for i, h in enumerate(hooks)]


def compare(subjects: list, out_dir, *, probes: str = "builtin", k: int = 10, min_score: int = 1,
            max_tokens: int = 64, per_category: int = 50) -> dict:
    """subjects: interp.subject.Subject with an SAE each (any order: sorted by depth here). Writes the
    figures, summary.md and summary.json (every number) into out_dir; returns that summary."""
    subjects = sorted(subjects, key=lambda s: layers.layer_of(hook_of(s.sae)))
    studies = {}
    for label, subject in zip(labels_for([s.sae for s in subjects]), subjects):
        require_lm(subject.datamodule, "feature_layers")
        p = load_probes(probes, subject.datamodule, per_category)
        studies[label] = study(subject.model, subject.sae, subject.datamodule.tokenizer, p, k=k,
                               min_score=min_score, max_tokens=max_tokens)
    summary = layers.summary(studies)
    layers.write(summary, out_dir)
    write_json(Path(out_dir) / SUMMARY_FILE, summary)
    return summary


def metrics(summary: dict) -> dict[str, float]:
    """The summary's headline numbers, flat: per SAE label when there are several, bare for one."""
    labels = summary["saes"]
    def key(name: str, label: str) -> str:
        return name if len(labels) == 1 else f"{name}/{label}"
    return {**{key("specialists_found", lab): summary["specialists_found"][lab] for lab in labels},
            **{key(f"specialist_score/{c}", lab): summary["scores"][c][lab] for c in summary["categories"]
               for lab in labels if summary["scores"][c][lab] is not None}}


def run(model, datamodule, out_dir, *, sae=None, compared: tuple = (), probes: str = "builtin", k: int = 10,
        min_score: int = 1, max_tokens: int = 64, per_category: int = 50) -> dict[str, float]:
    from interp.errors import NotApplicable
    from interp.subject import Subject

    subjects = list(compared) or ([Subject(model, datamodule, sae)] if sae is not None else [])
    if not subjects:
        raise NotApplicable("feature_layers compares SAEs; this run has none (analyze.py run=<sweep dir or [runs]>)")
    return metrics(compare(subjects, out_dir, probes=probes, k=k, min_score=min_score, max_tokens=max_tokens,
                           per_category=per_category))
