"""Language-model data from documents: tokenize, append <|endoftext|>, concatenate,
cut into non-overlapping chunks of seq_len+1 tokens (tokens = chunk[:-1], targets = chunk[1:]).

Subclasses supply the documents (`documents()`) and a cheap description of them
(`source()`) that keys the token cache, so a second run skips tokenization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from interp.data.base import ArrayDataset, BaseDataModule, TextDataConfig, lm_batch
from interp import phases
from interp.data.cache import cached_arrays
from interp.data.tokenizer import Tokenizer, tokenizer_for, tokenizer_key
from interp.errors import DataError


@dataclass
class TokenStreamConfig(TextDataConfig):
    kind: str = "lm"
    vocab_size: int = 8192
    seq_len: int = 256
    batch_size: int = 16
    max_val_chunks: Optional[int] = 256  # evenly spaced subset: keeps validation quick
    cache_dir: Optional[str] = None  # None: tokenize every time


def tokenize_documents(tokenizer: Tokenizer, texts: list[str], desc: str) -> np.ndarray:
    """One flat stream: doc tokens + eot for each doc (uint16 when ids fit)."""
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32
    parts = [np.zeros(0, dtype)]
    with tqdm(total=sum(map(len, texts)), desc=desc, unit="char", unit_scale=True, disable=None) as bar:
        for i in range(0, len(texts), 64):  # batches: tiktoken threads within one, the bar moves between
            batch = texts[i : i + 64]
            parts += [np.asarray(ids + [tokenizer.eot_id], dtype) for ids in tokenizer.encode_batch(batch)]
            bar.update(sum(map(len, batch)))
    return np.concatenate(parts)


def chunk_stream(stream: np.ndarray, seq_len: int, split: str, max_chunks: int | None = None,
                 start: int | None = None) -> np.ndarray:
    """[n, seq_len + 1] windows of the stream (inputs and next-token targets). `start`: a token every window
    begins with (a model's BOS), followed by seq_len tokens of the stream."""
    width = seq_len + 1 if start is None else seq_len   # tokens of the stream per window
    n = len(stream) // width
    if n == 0:
        need = "data.seq_len+1" if start is None else "data.seq_len"
        raise DataError(
            f"The {split} split has only {len(stream)} tokens, fewer than {need}={width}: "
            f"add data (e.g. raise data.max_files) or lower data.seq_len."
        )
    chunks = stream[: n * width].reshape(n, width)
    if max_chunks is not None and n > max_chunks:
        chunks = chunks[np.linspace(0, n - 1, max_chunks).round().astype(int)]
    if start is not None:
        chunks = np.concatenate([np.full((len(chunks), 1), start, chunks.dtype), chunks], axis=1)
    return chunks


class TokenStreamDataModule(BaseDataModule):
    kind = "lm"

    def __init__(self, cfg, seed: int):
        super().__init__(cfg, seed)
        self.tokenizer = tokenizer_for(cfg)
        self.seq_len = cfg.seq_len

    def source(self) -> dict:
        """JSON-able description of exactly what `documents()` returns (the cache key)."""
        raise NotImplementedError

    def documents(self) -> tuple[list[str], list[str]]:
        """(train texts, val texts)."""
        raise NotImplementedError

    def token_streams(self) -> dict[str, np.ndarray]:
        return cached_arrays(self.cfg.cache_dir, self.cfg.name, self._tokenize,
                             cls=type(self).__name__, vocab_size=self.cfg.vocab_size, source=self.source(),
                             **tokenizer_key(self.tokenizer))

    def _tokenize(self) -> dict[str, np.ndarray]:
        with phases.timed("tokenize"):
            return self._tokenize_documents()

    def _tokenize_documents(self) -> dict[str, np.ndarray]:
        train_texts, val_texts = self.documents()
        return {
            "train": tokenize_documents(self.tokenizer, train_texts, f"tokenizing {self.cfg.name} train"),
            "val": tokenize_documents(self.tokenizer, val_texts, f"tokenizing {self.cfg.name} val"),
        }

    def build(self):
        streams = self.token_streams()
        start = self.tokenizer.bos_id if self.tokenizer.prepend_bos else None
        train = chunk_stream(streams["train"], self.seq_len, "train", start=start)
        val = chunk_stream(streams["val"], self.seq_len, "val", self.cfg.max_val_chunks, start=start)
        self.summary.update(
            train_tokens=len(streams["train"]), val_tokens=len(streams["val"]),
            train_chunks=len(train), val_chunks=len(val),
        )
        return ArrayDataset({"seq": train}, lm_batch), ArrayDataset({"seq": val}, lm_batch), None
