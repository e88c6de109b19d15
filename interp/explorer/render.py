"""The explorer's pages from Jinja2 templates (templates/*.html) with autoescaping: every value a template
prints is HTML-escaped unless it is `Markup` (only figure divs and SVG, built from escaped parts).

`templates` is Starlette's `Jinja2Templates` on our own environment (strict: a misspelt variable is an
error, not an empty string); `render` gives the same pages without a request (the static start page).
Links are built here, so every page links a run, a file or a feature the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from starlette.templating import Jinja2Templates

from interp.data.tokenizer import visible

HERE = Path(__file__).parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"


def link(route: str, **params) -> str:
    """`route?params` with empty (None or "") parameters left out, so a URL names only what was chosen."""
    kept = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return route + ("?" + urlencode(kept) if kept else "")


def file_link(path) -> str:
    return link("/file", path=path)


def run_link(path, **params) -> str:
    return link("/run", path=path, **params)


def feature_link(path, dictionary: str, feature: int) -> str:
    return link("/feature", path=path, dict=dictionary, feature=feature)


def num(value, digits: int = 4) -> str:
    """A metric as text: integers whole, floats to `digits` significant figures, anything else as is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}" if isinstance(value, int) else f"{value:.{digits}g}"
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def shade(act: float, scale: float) -> str:
    """The background of a token with activation `act` where `scale` is the strongest shown."""
    alpha = 0.0 if scale <= 0 else min(1.0, max(0.0, act / scale))
    return f"background:rgba(255,140,0,{alpha:.2f})"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(shown=visible, num=num)
    env.globals.update(zip=zip, link=link, file_link=file_link, run_link=run_link, feature_link=feature_link, shade=shade)
    return env


templates = Jinja2Templates(env=_env())


def render(name: str, **context) -> str:
    return templates.env.get_template(name).render(**context)


def stylesheet() -> str:
    return (STATIC / "explorer.css").read_text()
