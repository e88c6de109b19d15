"""`qa`: closed-book factual QA, "Question: <q> Answer: <a>" + eot, from pycountry.

Each example is the tokenizer's prefix + "Question: q Answer:" + " a" + [eot], padded with eot; the prefix is
[eot] here, a pretrained model's BOS where it expects one, else nothing (interp.data.hf_tokenizer).
Train = every fact x training templates; val = every fact x held-out templates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from interp.data.base import ArrayDataset, BaseDataModule, TextDataConfig, lm_batch
from interp.data.qa_facts import TEMPLATES, facts
from interp.data.tokenizer import tokenizer_for
from interp.errors import ConfigError, DataError


@dataclass
class QAConfig(TextDataConfig):
    name: str = "qa"
    kind: str = "lm"
    vocab_size: int = 8192
    seq_len: int = 56  # input positions; the longest example needs 51 at vocab 8192, 41 at 50257
    batch_size: int = 64
    relations: List[str] = field(default_factory=lambda: list(TEMPLATES))
    max_facts_per_relation: Optional[int] = None  # random subset (by seed)
    heldout_templates: int = 1  # last N templates of each relation are validation-only
    loss_on: str = "all"  # all | answer (answer tokens + final eot only)
    exact_match_max: int = 512  # examples per exact-match set


def prompt_text(template: str, subject: str) -> str:
    return f"Question: {template.format(subject)} Answer:"


class QADataModule(BaseDataModule):
    kind = "lm"

    def __init__(self, cfg: QAConfig, seed: int):
        super().__init__(cfg, seed)
        unknown = [r for r in cfg.relations if r not in TEMPLATES]
        n_min = min(len(TEMPLATES[r]) for r in TEMPLATES)
        problems = [
            (bool(unknown) or not cfg.relations,
             f"data.relations has unknown or no relations {unknown}; valid: {list(TEMPLATES)}"),
            (not 1 <= cfg.heldout_templates < n_min,
             f"data.heldout_templates={cfg.heldout_templates} must be in [1, {n_min - 1}]"),
            (cfg.loss_on not in ("all", "answer"), f"data.loss_on={cfg.loss_on!r} must be 'all' or 'answer'"),
        ]
        if msgs := [m for bad, m in problems if bad]:
            raise ConfigError("Invalid qa data config: " + "; ".join(msgs) + ".")
        self.tokenizer = tokenizer_for(cfg)
        self.seq_len = cfg.seq_len
        self.facts = {r: self._select(r) for r in cfg.relations}
        self.summary.update({f"facts/{r}": len(f) for r, f in self.facts.items()})

    def _select(self, relation: str) -> list[tuple[str, str]]:
        all_facts, k = facts(relation), self.cfg.max_facts_per_relation
        if k is None or k >= len(all_facts):
            return all_facts
        keep = sorted(random.Random(f"{self.seed}/{relation}").sample(range(len(all_facts)), k))
        return [all_facts[i] for i in keep]

    def examples(self, heldout: bool) -> list[tuple[str, str]]:
        """(prompt text, answer) for every fact x (held-out or training) template."""
        h = self.cfg.heldout_templates
        return [
            (prompt_text(t, s), a)
            for r, fs in self.facts.items()
            for t in (TEMPLATES[r][-h:] if heldout else TEMPLATES[r][:-h])
            for s, a in fs
        ]

    def _encode(self, examples) -> tuple[list[list[int]], list[list[int]]]:
        # Prompt and answer encoded separately, exactly as greedy decoding will see them.
        eot, prefix = self.tokenizer.eot_id, list(self.tokenizer.prefix)
        prompts = [prefix + p for p in self.tokenizer.encode_batch([p for p, _ in examples])]
        answers = [a + [eot] for a in self.tokenizer.encode_batch([" " + a for _, a in examples])]
        return prompts, answers

    def _arrays(self, prompts, answers) -> dict[str, np.ndarray]:
        T, eot = self.seq_len, self.tokenizer.eot_id
        seq = np.full((len(prompts), T + 1), eot, dtype=np.uint16 if self.tokenizer.vocab_size <= 2**16 else np.int32)
        mask = np.zeros((len(prompts), T), dtype=bool)  # mask[t]: target seq[t+1] counts
        length = np.zeros(len(prompts), dtype=np.int64)  # input positions before the padding
        for i, (p, a) in enumerate(zip(prompts, answers)):
            n = len(p) + len(a)
            seq[i, :n] = p + a
            mask[i, (len(p) - 1 if self.cfg.loss_on == "answer" else 0) : n - 1] = True
            length[i] = n - 1
        return {"seq": seq, "loss_mask": mask, "length": length}

    def build(self):
        train, val = self._encode(self.examples(heldout=False)), self._encode(self.examples(heldout=True))
        longest = max(len(p) + len(a) - 1 for ps, ans in (train, val) for p, a in zip(ps, ans))  # inputs needed
        if longest > self.seq_len:
            raise DataError(
                f"The longest qa example needs {longest} input positions but data.seq_len={self.seq_len}: "
                f"set data.seq_len={longest} or more (and model n_ctx >= it)."
            )
        self.summary.update(train_examples=len(train[0]), val_examples=len(val[0]), longest_example=longest)
        return ArrayDataset(self._arrays(*train), lm_batch), ArrayDataset(self._arrays(*val), lm_batch), None

    def exact_match_sets(self) -> dict[str, list[tuple[list[int], str]]]:
        """Greedy-decoding probes: (prompt ids = prefix + "Question: ... Answer:", answer).

        Each set is a seeded sample of at most `exact_match_max` examples.
        """
        out = {}
        for key, heldout in (("train_templates", False), ("heldout_templates", True)):
            ex = self.examples(heldout)
            n = min(self.cfg.exact_match_max, len(ex))
            ex = [ex[i] for i in sorted(random.Random(f"{self.seed}/{key}").sample(range(len(ex)), n))]
            prompts, _ = self._encode(ex)
            out[key] = [(p, a.strip()) for p, (_, a) in zip(prompts, ex)]
        return out
