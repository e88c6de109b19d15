"""`mix`: real text in labelled categories (see mix_sources), for per-category loss and probe sets.

- Split by document, seed-independently: h = sha256(document id) in [0, 1); val if h < val_fraction,
  held-out if h < val_fraction + heldout_fraction, else train. A document's split never depends on
  which other documents exist, so a held-out document stays held out across package versions.
- Balance: within each (split, category) documents are taken in h order (a fixed random sample) until
  `max_train_tokens_per_category` tokens (val and held-out get the same share of it as of documents;
  a train/val document crossing the cap is cut there, a held-out one kept whole), so code and legal
  text do not swamp the rest.
- Each category is its own token stream (documents joined by <|endoftext|>, as in `code`), cut into
  seq_len+1 chunks: a sequence never mixes categories, and every batch has `category` [B], the index
  into `dm.categories`.
- Held-out documents are not trained or validated on: `dm.heldout_documents()` -> [(category, text)].
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.data import mix_sources
from interp.data.base import ArrayDataset, BaseDataModule, lm_batch
from interp.data.cache import cached_arrays
from interp.data.token_stream import TokenStreamConfig, chunk_stream
from interp.data.tokenizer import Tokenizer, tokenizer_for, tokenizer_key
from interp.errors import ConfigError, DataError

SPLITS = ("train", "val", "heldout")
FORMAT = 1   # bump when a source's extraction changes (the cache key has package versions, not code)


@dataclass
class MixConfig(TokenStreamConfig):
    name: str = "mix"
    categories: List[str] = field(default_factory=lambda: list(mix_sources.CATEGORIES))
    # {category: path glob}, each file one document; on the command line +data.extra.<category>=<glob>
    extra: Dict[str, str] = field(default_factory=dict)
    max_train_tokens_per_category: Optional[int] = 1_000_000   # null: no cap
    val_fraction: float = 0.1
    heldout_fraction: float = 0.05
    max_val_chunks: Optional[int] = 64   # per category: evenly spaced, keeps validation quick


def doc_hash(doc_id: str) -> float:
    """A uniform number in [0, 1) fixed by the id alone (no seed, no Python hash randomisation)."""
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64


def split_of(doc_id: str, val_fraction: float, heldout_fraction: float) -> str:
    h = doc_hash(doc_id)
    return "val" if h < val_fraction else "heldout" if h < val_fraction + heldout_fraction else "train"


def pack(tokenizer: Tokenizer, texts: list[str], cap: int | None, cut_last: bool = True,
         bar=None) -> tuple[np.ndarray, list[int], bool]:
    """Texts (in order) + eot each, until `cap` tokens: (stream, end offset of each text taken, last text cut?).
    cut_last=False keeps the text that crosses the cap whole."""
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32
    parts, ends, total, done = [], [], 0, 0
    full = lambda: cap is not None and total >= cap  # noqa: E731
    while done < len(texts) and not full():
        batch = texts[done:done + 16]   # small batches: stop soon after the cap
        for ids in tokenizer.encode_batch(batch):
            if full():
                break
            parts.append(np.asarray(ids + [tokenizer.eot_id], dtype))
            total += len(parts[-1])
            ends.append(total)
        done += len(batch)
        if bar is not None:
            bar.update(len(batch) if not full() else len(texts) - done + len(batch))
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype)
    cut = cut_last and cap is not None and total > cap
    if cut:
        stream, ends[-1] = stream[:cap], cap
    return stream, ends, cut


def mix_batch(rows: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {**lm_batch(rows), "category": torch.from_numpy(rows["category"].astype(np.int64))}


class MixDataModule(BaseDataModule):
    kind = "lm"

    def __init__(self, cfg, seed: int):
        super().__init__(cfg, seed)
        self.tokenizer = tokenizer_for(cfg)
        self.seq_len = cfg.seq_len
        unknown = [c for c in cfg.categories if c not in mix_sources.CATEGORIES]
        if unknown or len(set(cfg.categories)) != len(cfg.categories):
            raise ConfigError(f"data.categories={list(cfg.categories)}: each must be one of "
                              f"{', '.join(mix_sources.CATEGORIES)}, once. Fix: drop {unknown or 'the repeats'} "
                              "(add categories of your own with +data.extra.<name>='/abs/dir/*.txt').")
        bad = [c for c in cfg.extra if not re.fullmatch(r"[A-Za-z0-9_]+", c)]
        if bad:
            raise ConfigError(f"data.extra category names {bad} must be letters, digits and _ (they name metrics). "
                              "Fix: rename them.")
        if not (0 < cfg.val_fraction and 0 <= cfg.heldout_fraction and cfg.val_fraction + cfg.heldout_fraction < 1):
            raise ConfigError(f"data.val_fraction={cfg.val_fraction}, data.heldout_fraction={cfg.heldout_fraction}: "
                              "need val > 0, held-out >= 0 and their sum < 1. Fix: e.g. 0.1 and 0.05.")
        self.categories: list[str] = list(cfg.categories) + sorted(set(cfg.extra) - set(cfg.categories))
        if not self.categories:
            raise ConfigError("data=mix has no categories. Fix: list some in data.categories or data.extra.")
        # Globbed now: a wrong path fails before any model is built.
        self.extra_files = {c: mix_sources.user_files(c, p) for c, p in sorted(cfg.extra.items())}

    # ------------------------------------------------------------ corpus (tokenised, cached)

    def caps(self) -> dict[str, int | None]:
        cap, vf, hf = self.cfg.max_train_tokens_per_category, self.cfg.val_fraction, self.cfg.heldout_fraction
        if cap is None:
            return dict.fromkeys(SPLITS)
        return {"train": cap, "val": round(cap * vf / (1 - vf - hf)), "heldout": round(cap * hf / (1 - vf - hf))}

    def source(self) -> dict:
        stat = lambda p: (str(p), p.stat().st_size, p.stat().st_mtime_ns)  # noqa: E731
        return {"format": FORMAT, "versions": mix_sources.source_versions(), "categories": list(self.cfg.categories),
                "extra": {c: [stat(p) for p in ps] for c, ps in self.extra_files.items()},
                "caps": self.caps(), "val_fraction": self.cfg.val_fraction,
                "heldout_fraction": self.cfg.heldout_fraction}

    def all_documents(self) -> list[mix_sources.Document]:
        docs = mix_sources.builtin_documents(list(self.cfg.categories))
        for c, files in self.extra_files.items():
            docs += mix_sources.user_documents(c, self.cfg.extra[c], files)
        return mix_sources.drop_duplicates(docs)

    def _build_corpus(self) -> dict[str, np.ndarray]:
        groups: dict[tuple[str, str], list] = {(s, c): [] for s in SPLITS for c in self.categories}
        for d in self.all_documents():
            groups[split_of(d.id, self.cfg.val_fraction, self.cfg.heldout_fraction), d.category].append(d)
        self._check_splits(groups)
        caps, arrays = self.caps(), {}
        meta = {"sources": [], "docs": {s: {} for s in SPLITS}, "cut": {s: {} for s in SPLITS}}
        sources: dict[tuple, int] = {}
        with tqdm(total=sum(map(len, groups.values())), desc="tokenizing mix", unit="doc", disable=None) as bar:
            for (split, cat), docs in groups.items():
                docs.sort(key=lambda d: doc_hash(d.id))
                # Held-out documents stay whole: they are a probe set of documents, not a token budget.
                stream, ends, cut = pack(self.tokenizer, [d.text for d in docs], caps[split], split != "heldout", bar)
                arrays[f"{split}.{cat}"] = stream
                rows = []
                for d, end in zip(docs, ends):
                    src = sources.setdefault((d.package, d.version, d.licence), len(sources))
                    rows.append([d.path, src, end])
                meta["docs"][split][cat], meta["cut"][split][cat] = rows, cut
        meta["sources"] = [list(k) for k in sources]
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        return arrays

    def _check_splits(self, groups) -> None:
        for c in self.categories:
            n = sum(len(groups[s, c]) for s in SPLITS)
            for s in SPLITS:
                if not groups[s, c] and (s != "heldout" or self.cfg.heldout_fraction > 0):
                    fix = (f"add files to data.extra.{c}" if c in self.extra_files else "add documents")
                    raise DataError(f"category {c!r} has no {s} documents ({n} in all; each document's split is "
                                    f"a hash of its id). Fix: {fix}, or raise data.{s}_fraction.")

    @cached_property
    def corpus(self) -> dict[str, np.ndarray]:
        """`<split>.<category>` -> token stream, `meta` -> JSON bytes (documents, provenance)."""
        return cached_arrays(self.cfg.cache_dir, self.cfg.name, self._build_corpus,
                             cls=type(self).__name__, vocab_size=self.cfg.vocab_size, source=self.source(),
                             **tokenizer_key(self.tokenizer))

    @cached_property
    def meta(self) -> dict:
        return json.loads(self.corpus["meta"].tobytes())

    def category_streams(self, split: str) -> dict[str, np.ndarray]:
        return {c: self.corpus[f"{split}.{c}"] for c in self.categories}

    def token_streams(self) -> dict[str, np.ndarray]:
        """All categories joined, per split (what the `ngram` / `bigram` analyses read)."""
        return {s: np.concatenate(list(self.category_streams(s).values())) for s in SPLITS}

    def documents(self, split: str) -> list[dict]:
        """Provenance of every document in `split` (in stream order), with its token count."""
        sources, out = self.meta["sources"], []
        for c in self.categories:
            rows, cut, start = self.meta["docs"][split][c], self.meta["cut"][split][c], 0
            for i, (path, src, end) in enumerate(rows):
                package, version, licence = sources[src]
                out.append({"id": f"{package}:{path}", "category": c, "package": package, "version": version,
                            "path": path, "licence": licence, "start": start, "end": end,
                            "complete": not (cut and i == len(rows) - 1)})
                start = end
        return out

    def heldout_documents(self) -> list[tuple[str, str]]:
        """(category, text) of each whole held-out document: a labelled probe set no run has seen."""
        streams = self.category_streams("heldout")
        return [(d["category"], self.tokenizer.decode(streams[d["category"]][d["start"]:d["end"] - 1]))
                for d in self.documents("heldout") if d["complete"]]

    def corpus_table(self) -> list[dict]:
        """One row per category: sources, licences, documents and tokens per split."""
        rows = []
        for c in self.categories:
            row = {"category": c, "sources": set(), "licences": set()}
            for s in SPLITS:
                docs = [d for d in self.documents(s) if d["category"] == c]
                row["sources"] |= {f"{d['package']} {d['version']}".strip() for d in docs}
                row["licences"] |= {d["licence"] for d in docs}
                row[f"{s}_docs"], row[f"{s}_tokens"] = len(docs), len(self.corpus[f"{s}.{c}"])
            rows.append({**row, "sources": sorted(row["sources"]), "licences": sorted(row["licences"])})
        return rows

    # ------------------------------------------------------------ datasets

    def build(self):
        seqs = {"train": [], "val": []}
        cats = {"train": [], "val": []}
        for i, c in enumerate(self.categories):
            for split, max_chunks in (("train", None), ("val", self.cfg.max_val_chunks)):
                stream = self.corpus[f"{split}.{c}"]
                if len(stream) < self.seq_len + 1:
                    raise DataError(f"category {c!r} has {len(stream)} {split} tokens, fewer than "
                                    f"data.seq_len+1={self.seq_len + 1}. Fix: lower data.seq_len, raise "
                                    f"data.max_train_tokens_per_category or add documents.")
                chunks = chunk_stream(stream, self.seq_len, f"{c} {split}", max_chunks,
                                      start=self.tokenizer.bos_id if self.tokenizer.prepend_bos else None)
                seqs[split].append(chunks)
                cats[split].append(np.full(len(chunks), i, np.int16))
                self.summary[f"{split}_tokens/{c}"] = len(stream)
                self.summary[f"{split}_chunks/{c}"] = len(chunks)
        datasets = {s: ArrayDataset({"seq": np.concatenate(seqs[s]), "category": np.concatenate(cats[s])},
                                    mix_batch) for s in seqs}
        for s in seqs:
            self.summary[f"{s}_tokens"] = sum(len(self.corpus[f"{s}.{c}"]) for c in self.categories)
            self.summary[f"{s}_chunks"] = len(datasets[s])
        return datasets["train"], datasets["val"], None
