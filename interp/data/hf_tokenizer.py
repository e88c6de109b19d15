"""A pretrained model's own tokenizer (Hugging Face `AutoTokenizer`), behind the interface of the project's
GPT-2 BPE (`interp.data.tokenizer.Tokenizer`): what every dataset tokenizes with under `model=pretrained`.

`data.tokenizer` names it ({name, local_dir, revision, prepend_bos}; set from the model, see
`tokenizer_spec`). Documents are encoded without special tokens and joined by the model's EOS, as
SAELens's pretokenisation does; with `prepend_bos` (TransformerLens's `default_prepend_bos` for that model:
on for Llama and Gemma, off for Pythia and Qwen) every sequence starts with the model's BOS.
"""

from __future__ import annotations

import contextlib
import hashlib
from functools import lru_cache
from pathlib import Path

from interp.errors import DataError


class HFTokenizer:
    def __init__(self, name: str, local_dir: str | None = None, revision: str | None = None,
                 prepend_bos: bool = False, vocab_size: int | None = None):
        self.name, self.local_dir, self.revision = name, local_dir, revision
        self.tok = _load(name, local_dir, revision)
        self.vocab_size = vocab_size or len(self.tok)
        if len(self.tok) > self.vocab_size:
            raise DataError(f"the tokenizer of {name} has {len(self.tok)} tokens, more than the model's vocabulary "
                            f"{self.vocab_size}. Fix: use the model's own tokenizer files.")
        self.eot_id = self.tok.eos_token_id
        if self.eot_id is None:
            raise DataError(f"the tokenizer of {name} has no end-of-text token (eos_token) to separate documents. "
                            "Fix: set eos_token in its tokenizer_config.json.")
        self.bos_id = self.tok.bos_token_id
        self.prepend_bos = bool(prepend_bos and self.bos_id is not None)

    @property
    def prefix(self) -> list[int]:
        """What a prompt or probe text is given in front: [BOS] where the model expects it, else nothing
        (TransformerLens's to_tokens with the model's default_prepend_bos)."""
        return [self.bos_id] if self.prepend_bos else []

    @property
    def key(self) -> dict:
        """What identifies the ids it gives (for cache keys): its name, source and files' hashes."""
        return {"name": self.name, "local_dir": self.local_dir, "revision": self.revision,
                "prepend_bos": self.prepend_bos, "files": _files_sha256(self.tok.name_or_path)}

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []

    def decode(self, ids) -> str:
        return self.tok.decode(list(map(int, ids)))

    def decode_tokens(self, ids) -> list[str]:
        return [self.tok.decode([int(i)]) for i in ids]

    def characters(self, ids) -> list[tuple[str, list[int]]]:
        """[(text, positions)]: tokens that only decode together (a character split over byte tokens) are
        one piece, as Tokenizer.characters gives them."""
        pieces, where = [], []
        for pos, i in enumerate(map(int, ids)):
            where.append(pos)
            text = self.tok.decode([int(ids[p]) for p in where])
            if text.endswith("\ufffd") and len(where) < 4 and pos + 1 < len(ids):
                continue   # an incomplete character: the next token may complete it
            pieces.append((text, where))
            where = []
        return pieces

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size}, prepend_bos={self.prepend_bos})"


def tokenizer_spec(model_cfg: dict, model) -> dict:
    """data.tokenizer for a pretrained model: where its tokenizer comes from, and whether sequences start
    with BOS (TransformerLens's default_prepend_bos for it)."""
    return {"name": model_cfg.get("name"), "local_dir": model_cfg.get("local_dir"),
            "revision": model_cfg.get("revision"), "prepend_bos": bool(model.cfg.default_prepend_bos)}


@lru_cache(maxsize=8)
def _load(name: str, local_dir: str | None, revision: str | None):
    from transformers import AutoTokenizer

    from interp import hub

    if local_dir is not None:
        try:
            return AutoTokenizer.from_pretrained(str(Path(local_dir).expanduser()), local_files_only=True)
        except (OSError, ValueError) as e:
            raise DataError(f"no tokenizer could be loaded from {local_dir} ({str(e).splitlines()[0]}). Fix: save the "
                            "model's tokenizer there (tokenizer.save_pretrained(folder)).") from None
    from interp.models.pretrained import official_name

    repo = official_name(name)
    try:
        with hub.offline_mode() if not hub.hub_reachable() else contextlib.nullcontext():
            return AutoTokenizer.from_pretrained(repo, revision=revision)
    except (OSError, ValueError) as e:
        raise DataError(f"the tokenizer of {repo!r} could not be loaded ({str(e).splitlines()[0]}). Fix: load it "
                        "once online (it is then cached), or use model.local_dir=/path with its files.") from None


def _files_sha256(folder: str) -> dict:
    path = Path(folder)
    names = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json",
             "special_tokens_map.json")
    return {n: hashlib.sha256((path / n).read_bytes()).hexdigest() for n in names if (path / n).is_file()}
