"""Labelled real documents for `data=mix`, read from installed packages (project dependencies).

| category       | source (package: what)                                                      | licence     |
|----------------|-----------------------------------------------------------------------------|-------------|
| python         | the interpreter's standard library: .py files (tests excluded, as in `code`)| PSF-2.0     |
| web            | licensedcode-data: notices that are mostly URLs or HTML; licence URL lists   | CC-BY-4.0   |
| math           | sympy, mpmath: docstrings with LaTeX / math markup                          | BSD-3-Clause|
| non_english    | chatterbot-corpus: dialogues in 27 languages; licensedcode non-English texts| BSD / CC-BY |
| formal         | licensedcode-data: licence texts and licence notices (English)              | CC-BY-4.0   |
| conversational | chatterbot-corpus: English dialogues                                        | BSD         |

No registry package found ships real social-media / emoji-heavy text, so there is
no such category; users can add their own with `data.extra`.
Every document has a stable id `<package>:<path>` (the split hashes it) and its provenance.
"""

from __future__ import annotations

import ast
import glob
import inspect
import os
import platform
import re
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import yaml
from tqdm.auto import tqdm

from interp.errors import DataError

CATEGORIES = ("python", "web", "math", "non_english", "formal", "conversational")
STDLIB_EXCLUDE = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class Document:
    category: str
    package: str
    version: str
    path: str      # file inside the package (user files: inside the glob's root); `::name` / `#n`: part of a file
    licence: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.package}:{self.path}"


def _dist_dir(dist: str, subdir: str) -> tuple[Path, str]:
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise DataError(f"data=mix reads package {dist!r}, which is not installed. "
                        f"Fix: pip install -e . (or pip install {dist}).") from None
    return Path(str(d.locate_file(subdir))), d.version


def _walk_py(root: Path, skip: set[str]) -> list[Path]:
    found = []
    for d, subdirs, names in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if s not in skip)   # sorted: os.walk order is the filesystem's
        found += [Path(d, n) for n in sorted(names) if n.endswith(".py")]
    return found


# ---------------------------------------------------------------- python


def stdlib_code() -> Iterator[Document]:
    root, version = Path(sysconfig.get_paths()["stdlib"]), platform.python_version()
    for p in _walk_py(root, STDLIB_EXCLUDE):
        # errors="replace": a few files are deliberately not UTF-8 (encoding tests).
        text = p.read_bytes().decode("utf-8", errors="replace")
        yield Document("python", "python-stdlib", version, p.relative_to(root).as_posix(), "PSF-2.0", text)


# ---------------------------------------------------------------- licensedcode: formal, web, non_english

_URL = re.compile(r"(?:https?|ftp)://\S+|www\.\S+")
_HTML_TAG = re.compile(r"</?(?:a|p|div|br|li|ul|ol|span|html|body|head|td|tr|table|h\d|b|i|pre)\b[^>]*>", re.I)
_URL_FIELDS = ("homepage_url", "text_urls", "other_urls", "osi_url", "faq_url")


def _front_matter(raw: str) -> tuple[str, str] | None:
    parts = raw.split("---\n", 2)
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "" else None


def _flags(front: str) -> dict[str, str]:
    """Top-level scalar `key: value` lines: all a rule's category needs (YAML for 35k files takes ~20 s)."""
    return dict(m.groups() for m in re.finditer(r"^(\w+): *(.*)$", front, re.M))


def _is_web(body: str) -> bool:
    """Mostly URLs (over half the characters) or HTML markup: the `web` category."""
    url_chars = sum(map(len, _URL.findall(body)))
    return url_chars > 0.5 * len(body) or len(_HTML_TAG.findall(body)) >= 3


def licensedcode() -> Iterator[Document]:
    data, version = _dist_dir("licensedcode-data", "licensedcode/data")
    if not data.is_dir():
        raise DataError(f"{data} is missing: the installed licensedcode-data has another layout. "
                        "Fix: pip install 'licensedcode-data>=32.1,<33'.")

    def doc(category, path, text):
        return Document(category, "licensedcode-data", version, path, "CC-BY-4.0", text)

    files = sorted(data.glob("licenses/*.LICENSE")) + sorted(data.glob("rules/*.RULE"))
    for p in tqdm(files, desc="reading licensedcode-data", unit="file", disable=None):
        split = _front_matter(p.read_text(encoding="utf-8", errors="replace"))
        if split is None:
            continue
        front, body = split
        flags, rel = _flags(front), p.relative_to(data.parent.parent).as_posix()
        # {{...}} marks ScanCode's required phrases; it is not part of the original text.
        body = body.replace("{{", "").replace("}}", "").strip()
        english = flags.get("language", "en") == "en"
        if p.suffix == ".LICENSE":
            meta = yaml.load(front, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
            urls = [u for f in _URL_FIELDS for u in ([meta[f]] if isinstance(meta.get(f), str) else meta.get(f) or [])]
            if urls:
                yield doc("web", f"{rel}#urls", "\n".join(urls))
            if body and not flags.get("is_unknown") and not flags.get("is_generic"):
                yield doc("formal" if english else "non_english", rel, body)
        elif body and not flags.get("is_false_positive"):
            if not english:
                yield doc("non_english", rel, body)
            elif _is_web(body):
                yield doc("web", rel, body)
            elif flags.get("is_license_notice"):
                # Full-text rules (is_license_text) are left out: mostly near-copies of the licences above.
                yield doc("formal", rel, body)


# ---------------------------------------------------------------- math

# LaTeX commands, $...$, RST math roles and mpmath's `\pi`-style default role.
_MATH = re.compile(r"\$[^$\n]+\$|\.\. math::|:math:`|`[^`\n]*\\[A-Za-z]+[^`\n]*`"
                   r"|\\(?:frac|sum|int|sqrt|alpha|beta|gamma|pi|infty|left|cdot|mathrm|operatorname|binom|prod|lim)\b")


def _docstrings(tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(qualified name, cleaned text) of module/class/function docstrings and module-level
    string constants (mpmath keeps its long function docs in `function_docs.py` that way)."""
    def visit(node, prefix):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield prefix or "<module>", doc
        for child in node.body:
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, f"{prefix}.{child.name}" if prefix else child.name)
            elif (prefix == "" and isinstance(child, ast.Assign) and len(child.targets) == 1
                  and isinstance(child.targets[0], ast.Name) and isinstance(child.value, ast.Constant)
                  and isinstance(child.value.value, str)):
                yield child.targets[0].id, inspect.cleandoc(child.value.value)
    yield from visit(tree, "")


def math_docstrings() -> Iterator[Document]:
    for dist, licence in (("sympy", "BSD-3-Clause"), ("mpmath", "BSD-3-Clause")):
        root, version = _dist_dir(dist, dist)
        files = _walk_py(root, {"tests", "benchmarks", "__pycache__"})
        seen: set[str] = set()
        for p in tqdm(files, desc=f"parsing {dist} docstrings", unit="file", disable=None):
            rel = p.relative_to(root.parent).as_posix()
            for name, text in _docstrings(ast.parse(p.read_bytes())):
                if _MATH.search(text) and f"{rel}::{name}" not in seen:   # redefinitions (if/else) keep the first
                    seen.add(f"{rel}::{name}")
                    yield Document("math", dist, version, f"{rel}::{name}", licence, text)


# ---------------------------------------------------------------- chatterbot: conversational, non_english


def chatterbot() -> Iterator[Document]:
    data, version = _dist_dir("chatterbot-corpus", "chatterbot_corpus/data")
    for p in sorted(data.glob("*/*.yml")):
        # BaseLoader: every scalar stays the string that was written ("Yes" is not True).
        convs = (yaml.load(p.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}).get("conversations") or []
        category = "conversational" if p.parent.name == "english" else "non_english"
        rel = p.relative_to(data.parent.parent).as_posix()
        for i, turns in enumerate(convs):
            # One turn per line; a few entries are one string "question - answer" and stay so.
            text = "\n".join(turns) if isinstance(turns, list) else str(turns)
            if text.strip():
                yield Document(category, "chatterbot-corpus", version, f"{rel}#{i}", "BSD (PyPI classifier)", text)


# ---------------------------------------------------------------- all built-in sources

# source -> the categories it yields; a source runs only if one of them is asked for.
SOURCES: dict[Callable[[], Iterator[Document]], tuple[str, ...]] = {
    stdlib_code: ("python",),
    licensedcode: ("formal", "web", "non_english"),
    math_docstrings: ("math",),
    chatterbot: ("conversational", "non_english"),
}
PACKAGES = ("licensedcode-data", "chatterbot-corpus", "sympy", "mpmath")


def source_versions() -> dict[str, str]:
    """What the built-in documents depend on (a cheap cache key: no file is read)."""
    versions = {"python": platform.python_version(), "stdlib": sysconfig.get_paths()["stdlib"]}
    for dist in PACKAGES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def builtin_documents(categories: list[str]) -> list[Document]:
    """Documents of the asked-for categories (only the sources that yield them are read)."""
    return [d for source, yields in SOURCES.items() if set(yields) & set(categories)
            for d in source() if d.category in categories]


def drop_duplicates(docs: list[Document]) -> list[Document]:
    """Exact duplicates (same text) dropped, the first kept: a copy must not sit on both sides of a split
    (chatterbot's English tech_support.yml alone repeats ~900 dialogues)."""
    seen: set[str] = set()
    return [d for d in docs if not (d.text in seen or seen.add(d.text))]


def user_files(category: str, pattern: str) -> list[Path]:
    """The files `data.extra.<category>` matches (each one document); missing or empty -> DataError."""
    setting = f"data.extra.{category}"
    if not pattern or not str(pattern).strip():
        raise DataError(f"{setting} is empty. Fix: give a path glob, e.g. +{setting}='/abs/dir/*.txt'.")
    files = sorted({Path(p).resolve() for p in glob.glob(os.path.expanduser(pattern), recursive=True)
                    if os.path.isfile(p)})
    if not files:
        raise DataError(f"{setting}={pattern!r} matched no files (cwd: {os.getcwd()}). "
                        f"Fix: use an absolute path or glob that exists, e.g. /data/{category}/**/*.txt.")
    if all(p.stat().st_size == 0 for p in files):
        raise DataError(f"{setting}={pattern!r} matched {len(files)} file(s), all empty. "
                        "Fix: point it at files with text in them.")
    return files


def glob_root(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard ('/data/a/**/*.txt' -> /data/a)."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]
    root = Path(*fixed) if fixed else Path(".")
    return (root if root.is_dir() else root.parent).resolve()


def user_documents(category: str, pattern: str, files: list[Path]) -> list[Document]:
    # Paths relative to the glob's root: ids (and so splits) survive moving the data directory.
    root = glob_root(pattern)
    # errors="replace": one stray byte should not lose a user's file.
    docs = [Document(category, "user", "", p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p),
                     "user-supplied (unknown)", p.read_bytes().decode("utf-8", errors="replace")) for p in files]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise DataError(f"data.extra.{category} matched {len(files)} file(s) with only whitespace in them. "
                        "Fix: point it at files with text in them.")
    return docs
