"""The one way an analysis runs: options checked, NotApplicable turned into a skip line,
figures and results.json written into `out_dir`, metrics returned.

The training callback (interp.callbacks.AnalysisCallback) and analyze.py both call
`run_analysis`, so an analysis leaves the same files whichever ran it.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

from interp.analyses import ANALYSES
from interp.config_schema import Rule, check_value
from interp.errors import ConfigError, NotApplicable
from interp.run_dir import RESULTS_FILE, write_json
from interp.subject import Subject

_POSITIONAL = ("model", "datamodule", "out_dir")
# Subject fields an analysis may ask for by naming them (e.g. an SAE); never user options.
_FROM_SUBJECT = tuple(f.name for f in fields(Subject) if f.name not in _POSITIONAL)


def check_name(name: str, extra: tuple[str, ...] = ()) -> None:
    if name not in ANALYSES and name not in extra:
        raise ConfigError(f"unknown analysis {name!r}; valid: {sorted([*extra, *ANALYSES])}. "
                          "Fix: analysis=<one of them> or analysis=[a,b].")


def options_of(name: str) -> dict[str, object]:
    """The options analysis `name` accepts, with their defaults."""
    params = inspect.signature(ANALYSES[name]).parameters
    return {p.name: p.default for p in params.values() if p.name not in (*_POSITIONAL, *_FROM_SUBJECT)}


def option_rules(name: str) -> dict[str, Rule]:
    """The typed options of analysis `name` (int, float, bool, or one of them or None, by annotation or by
    default value) as config-schema rules; text and other options are the analysis's to check."""
    import typing

    fn, kinds = ANALYSES[name], (int, float, bool)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:   # an annotation that does not evaluate here: fall back to the defaults' types
        hints = {}
    rules = {}
    for option, default in options_of(name).items():
        hint = hints.get(option, type(default))
        args = set(typing.get_args(hint)) or {hint}
        nullable = type(None) in args
        if len(args - {type(None)}) == 1 and (kind := next(iter(args - {type(None)}))) in kinds:
            rules[option] = Rule(kind, null=nullable or default is None)
    return rules


def subject_fields(name: str) -> list[str]:
    """The Subject fields (beyond model and data) analysis `name` needs, e.g. an SAE."""
    params = inspect.signature(ANALYSES[name]).parameters
    return [f for f in _FROM_SUBJECT if f in params]


def split_options(names: list[str], options: dict) -> dict[str, dict]:
    """Each analysis's share of `options`; an option no analysis in `names` accepts is a ConfigError
    that lists the valid ones (a misspelt `promt=` must not be silently ignored)."""
    accepted = {name: options_of(name) for name in names}
    if unknown := sorted(k for k in options if not any(k in valid for valid in accepted.values())):
        listing = "; ".join(f"{name}: {', '.join(valid) or '(none)'}" for name, valid in accepted.items())
        raise ConfigError(f"unknown option {unknown[0]!r} for analysis {'/'.join(names)}. Valid options: {listing}. "
                          f"Fix: correct or drop {unknown[0]}=.")
    for name in names:   # each value against the type its analysis declares (`k=abc` for an int)
        for option, rule in option_rules(name).items():
            if option in options:
                check_value(option, options[option], rule, where=f"analysis {name}: ")
    return {name: {k: v for k, v in options.items() if k in valid} for name, valid in accepted.items()}


def run_analysis(name: str, subject: Subject, out_dir: str | Path, options: dict | None = None) -> dict | None:
    """Run analysis `name` on `subject`; write `out_dir`/results.json; return its metrics,
    or None (after printing `skipped <name>: <reason>`) when it does not apply."""
    kwargs = split_options([name], dict(options or {}))[name]
    out_dir = Path(out_dir)
    try:
        params = inspect.signature(ANALYSES[name]).parameters
        for field in subject_fields(name):
            if (value := getattr(subject, field)) is not None and value != ():   # `compared=()`: none
                kwargs[field] = value
            elif params[field].default is inspect.Parameter.empty:   # `sae=None`: optional
                raise NotApplicable(f"{name} needs a run with {field}; this one has none")
        results = ANALYSES[name](subject.model, subject.datamodule, out_dir, **kwargs)
    except NotApplicable as e:
        print(f"skipped {name}: {e}", flush=True)
        return None
    write_json(out_dir / RESULTS_FILE, results)
    return results
