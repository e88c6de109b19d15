"""Command-line sugar shared by train.py and analyze.py, applied to sys.argv before Hydra sees it.

- Free text: `prompt=def f(a, b): return a` is not valid Hydra override grammar (parentheses,
  commas, colons...). Values of the text options are quoted for Hydra here, so any text works
  as typed (quote it for the shell: prompt="..."). `${` is escaped so text is never an interpolation.
- Bare names: `analyze.py run=<run> hooks` means `analysis=hooks`.
- `-m` anywhere: `train.py model=kgram -m seed=0,1` is a sweep, as with `-m` first.
- Options an entry config does not declare need no `+` (`k=3` is `+k=3`).
- An override Hydra cannot parse is reported as one `error: ... Fix: ...` line with exit 2,
  like every other bad input, instead of Hydra's multi-line message and exit 1.
"""

from __future__ import annotations

import re
import sys


def hydra_quote(text: str) -> str:
    """`text` as a single-quoted Hydra string whose parsed value is exactly `text`.

    Inside quotes Hydra halves a run of backslashes that precedes a quote or the end; a lone
    backslash elsewhere is literal.
    """
    text = text.replace("${", "\\${")   # OmegaConf's escape: a literal "${", not an interpolation
    out = re.sub(r"(\\*)'", lambda m: "\\" * (2 * len(m.group(1)) + 1) + "'", text)
    out = re.sub(r"(\\+)$", lambda m: "\\" * (2 * len(m.group(1))), out)
    return f"'{out}'"


def _is_quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""


def quote_text_options(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """Quote the values of `key=...` / `+key=...` for every key in `keys` (left alone if the user
    already quoted them for Hydra)."""
    out = argv[:1]
    for arg in argv[1:]:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") in keys and not _is_quoted(value):
            arg = f"{key}={hydra_quote(value)}"
        out.append(arg)
    return out


def bare_names_to(key: str, argv: list[str]) -> list[str]:
    """`prog run=... hooks` -> `prog run=... <key>=hooks` (not after a `--flag value`)."""
    out = argv[:1]
    for prev, arg in zip(argv, argv[1:]):
        bare = "=" not in arg and not arg.startswith("-") and not prev.startswith("-")
        out.append(f"{key}={arg}" if bare else arg)
    return out


def plus_new_keys(argv: list[str], known: set[str]) -> list[str]:
    """`k=3` -> `+k=3` when `k` is not a key of the entry config: options an analysis declares
    need no `+` (a misspelt one is then reported by the analysis runner with the valid names)."""
    out = argv[:1]
    for arg in argv[1:]:
        key, eq, _ = arg.partition("=")
        new = eq and not arg.startswith(("-", "+", "~")) and key.split(".")[0] not in known
        out.append(f"+{arg}" if new else arg)
    return out


def multirun_flag_first(argv: list[str]) -> list[str]:
    """`prog a=1 -m b=2,3` -> `prog -m a=1 b=2,3`: Hydra's parser takes overrides only after its flags."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in flags]


def check_override_syntax(argv: list[str], text_keys: tuple[str, ...] = ()) -> None:
    """Exit 2 with one `error: ... Fix: ...` line if Hydra's grammar rejects an override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in argv[1:]:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as e:
            reason = str(e).splitlines()[0]
            fix = ("quote the value for Hydra inside the shell's quotes, e.g. key=\"'a, b (c)'\""
                   if not text_keys else
                   f"quote it for Hydra, e.g. key=\"'a, b (c)'\"; free text options ({', '.join(text_keys)}) "
                   "need only the shell's quotes: prompt=\"any text\"")
            print(f"error: cannot parse the override {arg!r} ({reason}). Fix: {fix}.", file=sys.stderr)
            sys.exit(2)


class hydra_errors_in_one_line:
    """Around an `@hydra.main` call: Hydra's own errors (an override key that does not exist, an unknown
    config-group option) become one `error: ... Fix: ...` line and exit 2, like every other bad input.

    Hydra prints these over several lines and exits 1 unless HYDRA_FULL_ERROR=1, which makes it re-raise
    them (and any other error, with its full traceback) so they can be caught here.
    """

    def __init__(self, prog: str = "train.py", conf_dir=None):
        self.prog, self.conf_dir = prog, conf_dir   # conf_dir: to name a config group's options

    def __enter__(self):
        import os

        self._old = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"
        return self

    def __exit__(self, kind, error, tb):
        import os

        from hydra.errors import (
            ConfigCompositionException,
            MissingConfigException,
            OverrideParseException,
        )

        if self._old is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = self._old
        if not isinstance(error, (ConfigCompositionException, MissingConfigException, OverrideParseException)):
            return False
        text = "\n".join([str(error)] + ([str(error.__cause__)] if error.__cause__ else []))
        text = text.split("Config search path:")[0]   # Hydra's search path is noise here
        lines = [line.strip().rstrip(".") for line in text.splitlines()
                 if line.strip() and not line.strip().startswith(("full_key:", "object_type="))]
        parts: list[str] = []   # sentences joined by "; ", a list after "...:" by ", "
        for line in lines:
            if parts and parts[-1].endswith((":", ",")):
                parts[-1] += f" {line},"
            else:
                parts.append(line)
        reason = "; ".join(p.rstrip(",") for p in parts)
        if isinstance(error, MissingConfigException):
            fix = "choose one of the options listed"
        elif "not in struct" in text:
            fix = (f"check the key's spelling (python {self.prog} --cfg job prints every key), "
                   "or add a new key with a leading +, e.g. +key=value")
        else:
            fix = f"correct the override (python {self.prog} --cfg job prints every key and its value)"
        message = f"error: {reason.rstrip('.')}. Fix: {fix}."
        print(self.unchosen_group(text) or message, file=sys.stderr)
        sys.exit(2)

    def unchosen_group(self, text: str) -> str | None:
        """`data.vocab_size=...` with no `data=` where the group has no default (analyze.py's model, data,
        sae): the message says to choose the group, not to add a `+` key."""
        override = re.search(r"Could not override '([^']+)'", text)
        missing = re.search(r"Key '([^']+)' is not in struct", text)
        if not (override and missing and self.conf_dir) or override.group(1).split(".")[0] != missing.group(1):
            return None
        group, key = missing.group(1), override.group(1)
        options = sorted(p.stem for p in (self.conf_dir / group).glob("*.yaml"))
        if not options:
            return None
        typed = next((a for a in sys.argv[1:] if a.split("=", 1)[0].lstrip("+~") == key), key)
        return (f"error: {typed} sets a field of {group}, but no {group}= is chosen ({group} has no default here). "
                f"Fix: choose one with it: {group}=<name> {typed}, the name one of {', '.join(options)}.")
