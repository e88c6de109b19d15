"""Command-line sugar shared by train.py and analyze.py, applied to sys.argv before Hydra sees it.

- Free text: `prompt=def f(a, b): return a` is not valid Hydra override grammar (parentheses,
  commas, colons...). Values of the text options are quoted for Hydra here, so any text works
  as typed (quote it for the shell: prompt="..."). `${` is escaped so text is never an interpolation.
- Bare names: `analyze.py run=<run> hooks` means `analysis=hooks`.
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
            fix = ("check the key's spelling (python train.py --cfg job prints every key), "
                   "or add a new key with a leading +, e.g. +key=value")
        else:
            fix = "correct the override (python train.py --cfg job prints every key and its value)"
        print(f"error: {reason.rstrip('.')}. Fix: {fix}.", file=sys.stderr)
        sys.exit(2)
