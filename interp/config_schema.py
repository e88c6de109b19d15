"""The one schema of typed config values: what each numeric, boolean or choice field accepts.

`FIELDS` declares every such field once; `check_config` applies it, and the few rules between
fields (`CROSS_RULES`), to a composed config before any work: each train.py job (interp.sweep.run_job),
analyze.py (interp.analyzing.analyze) and the stored config of `train.py --reproduce`. A bad value is a
ConfigError naming the field, the value and what it accepts, so Lightning, TransformerLens or torch
never see it. Analysis options (`k=`, `n_batch=`) go through the same `check_value`, against the
types their functions declare (interp.analyses.runner).

A key absent from a config is skipped: each model, dataset and SAE architecture has fields of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from interp.errors import ConfigError

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


@dataclass(frozen=True)
class Rule:
    """What one field accepts."""

    type: type                 # int, float (an integer is a number too), bool or str
    min: float | None = None   # inclusive
    max: float | None = None   # inclusive
    positive: bool = False     # > 0 (a learning rate; integers say min=1)
    null: bool = False         # null is valid (a default decided elsewhere, e.g. read from the data)
    choices: tuple = ()
    special: tuple = ()        # (value, meaning) pairs valid outside min/max, e.g. Lightning's -1
    many: bool = False         # a list of such values is valid too

    def describe(self, full: bool = True) -> str:
        """What the field takes, e.g. `a positive integer, or -1 (no limit)`; `full=False`: the main kind only."""
        if self.choices:
            text = f"one of {', '.join(map(str, self.choices))}"
        elif self.type is int and self.min == 1 and self.max is None:
            text = "a positive integer"
        elif self.positive:
            text = f"a positive {'number' if self.type is float else 'integer'}"
        elif self.min is not None and self.max is not None:
            text = f"{_NAMES[self.type]} from {self.min:g} to {self.max:g}"
        elif self.min is not None:
            text = f"{_NAMES[self.type]} >= {self.min:g}"
        else:
            text = _NAMES[self.type]
        if not full:
            return text
        text += "".join(f", or {_show(v)} ({meaning})" for v, meaning in self.special)
        text += " (or a list of them)" if self.many else ""
        return text + (", or null" if self.null else "")

    def problem(self, value) -> str | None:
        """Why `value` is not valid, or None if it is."""
        if value is None:
            return None if self.null else "needs a value"
        if self.many and isinstance(value, list):
            return next((p for p in map(self.problem, value) if p), None)
        if self.choices:
            return None if value in self.choices else "is not a valid choice"
        if not _is(value, self.type):
            return f"is not {_NAMES[self.type]}"
        if any(value == v and type(value) is type(v) for v, _ in self.special):
            return None
        low = self.positive and value <= 0 or self.min is not None and value < self.min
        return "is out of range" if low or self.max is not None and value > self.max else None


def _is(value, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):   # True is an int to Python, not to a config
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if kind is float else kind)


def _show(value) -> str:
    """A value as it is typed in an override."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


POSITIVE = Rule(int, min=1)
COUNT = Rule(int, min=0)
FRACTION = Rule(float, min=0, max=1)
FLAG = Rule(bool)

FIELDS: dict[str, Rule] = {
    # train.yaml / analyze.yaml
    "seed": Rule(int),
    "threads": Rule(int, min=1, null=True),
    "final_eval": FLAG,
    "which": Rule(str, choices=("last", "best")),
    "wandb": FLAG,
    "device": Rule(str),   # analyze.py's torch device (a GPU one must exist: CROSS_RULES)
    # trainer: -1 is Lightning's "no limit"; trainer.max_steps=-1 needs max_epochs (CROSS_RULES)
    "trainer.accelerator": Rule(str, choices=("cpu", "gpu", "cuda", "mps", "tpu", "auto")),
    "trainer.num_nodes": POSITIVE,
    "trainer.max_steps": Rule(int, min=1, special=((-1, "no step limit, with trainer.max_epochs set"),)),
    "trainer.max_epochs": Rule(int, min=1, special=((-1, "no epoch limit"),), null=True),
    "trainer.log_every_n_steps": POSITIVE,
    "trainer.accumulate_grad_batches": POSITIVE,
    "trainer.gradient_clip_val": Rule(float, min=0, null=True),
    "trainer.num_sanity_val_steps": Rule(int, min=0, special=((-1, "all"),)),
    "trainer.enable_progress_bar": FLAG,
    # model (each architecture has some of these)
    "model.n_layers": COUNT,
    "model.d_model": POSITIVE,
    "model.n_heads": POSITIVE,
    "model.d_head": POSITIVE,
    "model.d_mlp": Rule(int, min=1, null=True),
    "model.n_ctx": Rule(int, min=1, null=True),
    "model.d_vocab": Rule(int, min=1, null=True),   # null: the pretrained model's own
    "model.k": POSITIVE,
    "model.d_embed": POSITIVE,
    "model.d_hidden": Rule(int, min=1, many=True),
    "model.n_classes": POSITIVE,
    "model.dropout": FRACTION,
    "model.attn_only": FLAG,
    # data (each dataset checks its own fields' types too: interp.data.base.parse_config)
    "data.vocab_size": POSITIVE,
    "data.seq_len": POSITIVE,
    "data.batch_size": POSITIVE,
    "data.num_workers": COUNT,
    "data.max_files": Rule(int, min=1, null=True),
    "data.val_every": POSITIVE,
    "data.num_train": POSITIVE,
    "data.num_val": POSITIVE,
    "data.num_test": COUNT,
    "data.n_values": POSITIVE,
    "data.val_fraction": FRACTION,
    # optim
    "optim.lr": Rule(float, positive=True, null=True),   # null: a task that picks its own (ModelTaskKind refuses it)
    "optim.weight_decay": Rule(float, min=0),
    "optim.momentum": Rule(float, min=0),
    "optim.warmup_steps": COUNT,
    "optim.min_lr_ratio": FRACTION,
    "optim.schedule": Rule(str, choices=("constant", "cosine", "linear"), null=True),   # null: the SAE recipe's
    # sae (conf/sae/; d_sae = expansion x d_in unless given, and k <= d_sae: CROSS_RULES)
    "sae.k": Rule(int, min=1, many=True),
    "sae.skip": FLAG,
    "sae.layer": Rule(int, min=0, null=True),
    "sae.expansion": Rule(int, min=1, many=True),
    "sae.d_sae": Rule(int, min=1, null=True, many=True),
    "sae.d_in": Rule(int, min=1, null=True),
    "sae.batch_size": POSITIVE,
    "sae.harvest_tokens": POSITIVE,
    "sae.buffer_tokens": POSITIVE,
    "sae.eval_batches": POSITIVE,
    "sae.norm_estimate_batches": POSITIVE,
    "sae.dead_feature_window": Rule(int, min=1, null=True),
    "sae.dead_feature_tokens": Rule(int, min=1, null=True),
    "sae.lr_reference_width": Rule(int, min=0, null=True),
    "sae.lr_at_reference": Rule(float, positive=True, null=True),
    "sae.lr_reference_steps": Rule(int, min=0, null=True),
    "sae.lr_schedule": Rule(str, choices=("constant", "linear"), null=True),
    "sae.init": Rule(str, choices=("interp", "saelens")),
    "sae.b_dec_init": Rule(str, choices=("zeros", "mean"), null=True),
    "sae.feature_sampling_window": POSITIVE,
    "sae.dense_threshold": FRACTION,
    "sae.source": Rule(str, choices=("cache", "stream")),
    "sae.l1_coefficient": Rule(float, min=0, many=True),
    "sae.l0_coefficient": Rule(float, min=0),
    "sae.aux_loss_coefficient": Rule(float, min=0),
}

_ABSENT = object()


def _get(cfg, key: str):
    """The resolved value at dotted `key`, or _ABSENT where the config has no such field (or its group is
    null, or it cannot be resolved here: whatever reads it reports that)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, (Mapping, DictConfig)) or part not in node:
            return _ABSENT
        try:
            node = node[part]
        except OmegaConfBaseException:
            return _ABSENT
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def check_value(key: str, value, rule: Rule, where: str = "") -> None:
    """ConfigError `<where>key=value <problem>. Fix: ...` unless `rule` accepts `value`."""
    if (problem := rule.problem(value)) is None:
        return
    raise ConfigError(f"{where}{key}={_show(value)} {problem}; {key} takes {rule.describe()}. "
                      f"Fix: {key}=<{rule.describe(full=False)}>.")


def check_config(cfg, where: str = "") -> None:
    """Every field of FIELDS that `cfg` (a DictConfig or a plain dict) has, then CROSS_RULES; `where`
    prefixes the message (e.g. the config.yaml it came from)."""
    values = {key: value for key in FIELDS if (value := _get(cfg, key)) is not _ABSENT}
    for key, value in values.items():
        check_value(key, value, FIELDS[key], where)
    for rule in CROSS_RULES:
        if problem := rule(values):
            raise ConfigError(where + problem)


# --- rules between fields: each takes {key: value} and returns a message, or None -------------------

def _steps_end(values: dict) -> str | None:
    if values.get("trainer.max_steps") == -1 and values.get("trainer.max_epochs") == -1:
        return ("trainer.max_steps=-1 (no step limit) with trainer.max_epochs=-1 (no epoch limit) never stops. "
                "Fix: trainer.max_steps=<a positive integer>, or trainer.max_epochs=<a positive integer>.")
    return None


def _cuda_missing(device: str) -> str | None:
    """Why `device` (a trainer accelerator or a torch device) cannot be used here, or None."""
    if device not in ("gpu", "cuda") and not str(device).startswith("cuda:"):
        return None
    import torch

    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
    return (f"no CUDA device is visible ({build}; torch.cuda.is_available() is False). Fix: run on the CPU "
            "(trainer=cpu, the default, or device=cpu for analyze.py), or install a CUDA build of torch on a "
            "machine with an NVIDIA GPU (and check CUDA_VISIBLE_DEVICES).")


def _gpu_visible(values: dict) -> str | None:
    for key in ("trainer.accelerator", "device"):
        if values.get(key) is not None and (problem := _cuda_missing(values[key])):
            return f"{key}={values[key]} asks for a GPU but {problem}"
    return None


def sae_width(d_sae: int | None, expansion: int, d_in: int) -> int:
    """The SAE's number of features: d_sae if given, else expansion x d_in."""
    return int(d_sae or expansion * d_in)


def check_sae_k(k: int | None, d_sae: int | None, expansion: int, d_in: int | None, hook: str | None = None) -> None:
    """ConfigError unless a TopK-style `sae.k` (features active per row) fits the SAE's features.
    Called before any work when the config fixes the width, and again once d_in is read from the hook."""
    if k is None or (d_sae is None and d_in is None):
        return
    width = sae_width(d_sae, expansion, d_in)
    if k <= width:
        return
    how = (f"sae.d_sae={d_sae}" if d_sae else
           f"sae.expansion={expansion} x d_in {d_in}" + (f", the width of {hook}" if hook else ""))
    more = f"sae.d_sae={k}" if d_sae else f"sae.expansion={-(-k // d_in)} (or sae.d_sae={k})"
    raise ConfigError(f"sae.k={k} is more than the SAE's {width} features ({how}): k of them are active per row. "
                      f"Fix: sae.k=<at most {width}>, or more features: {more}.")


def _listed(value) -> list:
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def _sae_k_fits(values: dict) -> str | None:
    try:   # every variant (sae.k=[8,16], sae.d_sae=[...]: one dictionary each)
        for k in _listed(values.get("sae.k")):
            for d_sae in _listed(values.get("sae.d_sae")):
                for expansion in _listed(values.get("sae.expansion", 1)):
                    check_sae_k(k, d_sae, expansion, values.get("sae.d_in"))
    except ConfigError as e:
        return str(e)
    return None


CROSS_RULES = (_steps_end, _gpu_visible, _sae_k_fits)
