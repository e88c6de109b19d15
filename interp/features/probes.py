"""Probe sets: short labelled texts that feature rankings and specialist scores are computed on.

- `builtin`: probes.tsv, shipped with the package: 10+ texts written for this project in each of
  seven categories (CATEGORIES; `web` and `non_english` etc. share data=mix's category names).
- a file of your own: `category<TAB>text` lines (in a text `\\n` is a newline, `\\t` a tab, `\\\\` a
  backslash; `#` lines are comments), or JSON: `[{"category": ..., "text": ...}, ...]` or
  `{"category": [text, ...], ...}`. Categories must be among CATEGORIES.
- `heldout`: data=mix's held-out documents (never trained or validated on), each cut to its first
  tokens: a second, larger probe set with the corpus's own labels.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from interp.errors import ConfigError, DataError, NotApplicable

CATEGORIES = ("python", "web", "math", "non_english", "social", "formal", "conversational")
BUILTIN, HELDOUT = "builtin", "heldout"
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


@dataclass
class Probes:
    categories: list[str]     # one per text
    texts: list[str]
    source: str               # "builtin", "heldout" or the file's path

    def __len__(self) -> int:
        return len(self.texts)

    def category_names(self) -> list[str]:
        """The categories present: CATEGORIES' order, then others (data=mix's extra categories)."""
        present = set(self.categories)
        return [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))


def unescape(text: str) -> str:
    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], text)


def parse_tsv(content: str, where: str) -> list[tuple[str, str, str]]:
    rows = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        category, tab, text = line.partition("\t")
        if not tab:
            raise ConfigError(f"{where} line {number} has no tab: {line[:60]!r}. Fix: write category<TAB>text "
                              "on each line (or use JSON).")
        rows.append((category.strip(), unescape(text), f"line {number}"))
    return rows


def parse_json(content: str, where: str) -> list[tuple[str, str, str]]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON ({e}). Fix: a list of {{\"category\": ..., \"text\": ...}} "
                          "or {\"category\": [texts]}.") from None
    if isinstance(data, dict):
        return [(c, t, f"{c}[{i}]") for c, texts in data.items() for i, t in enumerate(texts)]
    if isinstance(data, list) and all(isinstance(d, dict) and {"category", "text"} <= set(d) for d in data):
        return [(d["category"], d["text"], f"item {i}") for i, d in enumerate(data)]
    raise ConfigError(f"{where}: JSON probes must be a list of {{\"category\": ..., \"text\": ...}} or "
                      "{\"category\": [texts]}. Fix: reshape the file.")


def check(rows: list[tuple[str, str, str]], where: str) -> Probes:
    for category, text, at in rows:
        if category not in CATEGORIES:
            raise ConfigError(f"{where} {at}: unknown category {category!r}. Fix: use one of {', '.join(CATEGORIES)}.")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where} {at}: the text is empty. Fix: give each probe some text, or drop the line.")
    if not rows:
        raise ConfigError(f"{where} holds no probes. Fix: add category<TAB>text lines.")
    return Probes([r[0] for r in rows], [r[1] for r in rows], where)


def read_probe_file(path: str | Path) -> Probes:
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"probes={path} does not exist. Fix: probes=builtin, probes=heldout (data=mix) or the "
                          "path of a category<TAB>text or JSON file.") from None
    except UnicodeDecodeError as e:
        raise DataError(f"probes={path} is not UTF-8 text ({e}). Fix: save it as UTF-8.") from None
    parse = parse_json if path.suffix.lower() == ".json" else parse_tsv
    return check(parse(content, f"probes={path}"), f"probes={path}")


def builtin_probes() -> Probes:
    content = (resources.files("interp.features") / "probes.tsv").read_text(encoding="utf-8")
    return check(parse_tsv(content, BUILTIN), BUILTIN)


def heldout_probes(datamodule, per_category: int, max_chars: int = 400) -> Probes:
    """data=mix's held-out documents, up to `per_category` each, cut to their first `max_chars` characters
    (at a line break where there is one, so a code line is not split)."""
    if not hasattr(datamodule, "heldout_documents"):
        raise NotApplicable("probes=heldout needs a run on data=mix (labelled held-out documents)")
    taken: dict[str, int] = {}
    cats, texts = [], []
    for category, text in datamodule.heldout_documents():
        text = text.strip()
        if not text or taken.get(category, 0) >= per_category:
            continue
        if len(text) > max_chars:
            cut = text.rfind("\n", 0, max_chars)
            text = text[:cut if cut > max_chars // 2 else max_chars]
        taken[category] = taken.get(category, 0) + 1
        cats.append(category)
        texts.append(text)
    return Probes(cats, texts, HELDOUT)


def load_probes(spec: str, datamodule=None, per_category: int = 50) -> Probes:
    """`spec`: builtin, heldout or a file path."""
    if spec == BUILTIN:
        return builtin_probes()
    if spec == HELDOUT:
        return heldout_probes(datamodule, per_category)
    return read_probe_file(spec)
