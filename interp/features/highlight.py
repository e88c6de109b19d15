"""Token highlighting: every probe text with each token shaded by one feature's activation.

One self-contained HTML page (inline CSS, no scripts, no fonts or images from the network): texts
grouped by category, each token's background proportional to its activation (orange in the
feature's own category, grey elsewhere, as in seed S1), its exact value on hover.
"""

from __future__ import annotations

import html

_STYLE = """body{font-family:sans-serif;margin:1em;max-width:70em}
.t{font-family:monospace;white-space:pre-wrap;border-radius:2px}
.text{margin:4px 0;padding:3px;border-left:3px solid #ddd}
.peak{font-size:11px;margin-right:.6em;display:inline-block;width:4.5em}
.hi{color:#c00;font-weight:bold}.mid{color:#d60}.lo{color:#888}
h2{margin-top:1.2em;font-size:1.1em}"""


def neuronpedia_url(sae, feature: int) -> str | None:
    """The feature's Neuronpedia page when the SAE is a public release Neuronpedia hosts
    (SAELens records `neuronpedia_id`, e.g. gpt2-small/6-res-jb for gpt2-small-res-jb)."""
    np_id = getattr(sae.cfg.metadata, "neuronpedia_id", None)
    return f"https://www.neuronpedia.org/{np_id}/{feature}" if np_id else None


def readable_tokens(token_bytes: list[bytes], values: list[float]) -> tuple[list[str], list[float]]:
    """Token strings for display: a token that ends inside a UTF-8 character (byte-level BPE splits
    emoji and CJK characters) is merged into the next, keeping the larger value, so each shown piece
    is whole characters instead of U+FFFD."""
    pieces, shown, pending, value = [], [], b"", float("-inf")
    for b, v in zip(token_bytes, values):
        pending, value = pending + b, max(value, v)
        try:
            text, pending = pending.decode("utf-8"), b""
        except UnicodeDecodeError as e:
            if e.reason != "unexpected end of data":   # invalid bytes, not a cut character: show them replaced
                text, pending = pending.decode("utf-8", errors="replace"), b""
            else:
                text, pending = pending[:e.start].decode("utf-8"), pending[e.start:]
        if text:
            pieces.append(text)
            shown.append(value)
            value = float("-inf")
    if pending:
        pieces.append(pending.decode("utf-8", errors="replace"))
        shown.append(value)
    return pieces, shown


def _token(text: str, value: float, scale: float, rgb: str) -> str:
    alpha = min(max(value, 0.0) / scale, 1.0) if scale > 0 else 0.0
    return (f'<span class="t" style="background:rgba({rgb},{alpha:.3f})" title="{value:.4g}">'
            f"{html.escape(text)}</span>")


def _peak_class(value: float, scale: float) -> str:
    return "hi" if value >= 0.5 * scale else "mid" if value >= 0.1 * scale else "lo"


def highlight_page(feature: int, texts: list[dict], *, title: str, target: str | None = None,
                   link: str | None = None) -> str:
    """texts: [{"category", "tokens": [str], "values": [float]}] in display order (grouped by category).
    Shading is relative to the largest value on the page."""
    scale = max((max(t["values"], default=0.0) for t in texts), default=0.0)
    head = f"<!doctype html><html><head><meta charset=\"utf-8\"><title>feature {feature}</title><style>{_STYLE}</style>"
    intro = (f"<h1>Feature {feature}</h1><p>{html.escape(title)}. Largest activation on the page: {scale:.4g}. "
             "Hover a token for its activation; each text starts with its peak.</p>")
    parts = [head + "</head><body>", intro]
    if link:
        parts.append(f'<p><a href="{html.escape(link)}">This feature on Neuronpedia</a></p>')
    category = None
    for t in texts:
        if t["category"] != category:
            category = t["category"]
            mark = " (the feature's category)" if category == target else ""
            parts.append(f"<h2>{html.escape(category)}{mark}</h2>")
        rgb = "255,140,0" if target is None or t["category"] == target else "120,120,120"
        peak = max(t["values"], default=0.0)
        spans = "".join(_token(s, v, scale, rgb) for s, v in zip(t["tokens"], t["values"]))
        parts.append(f'<div class="text"><span class="peak {_peak_class(peak, scale)}">{peak:.3g}</span>{spans}</div>')
    parts.append("</body></html>\n")
    return "\n".join(parts)
