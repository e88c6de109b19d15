"""Dashboards as self-contained HTML: inline CSS and SVG, no scripts, fonts or images from anywhere.

Layout after sae-vis / sae-dashboard: a left column with the feature's statistics, its activation
histogram and the logit table; a right column with the top-activating contexts and examples from
each activation quantile, every token shaded by the feature's activation (value on hover).
"""

from __future__ import annotations

from html import escape

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
.cols{display:flex;gap:24px;align-items:flex-start}.left{flex:0 0 360px}.right{flex:1;min-width:0}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left}
.pos{color:#1a5fb4}.neg{color:#a51d2d}.ctx{font-family:monospace;font-size:13px;margin:3px 0;white-space:pre-wrap}
.tok{border-radius:2px}.at{outline:1px solid #c01c28}.val{color:#666;display:inline-block;width:64px}
h3{margin:14px 0 4px}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _token(text: str, act: float, scale: float, at: bool) -> str:
    alpha = 0.0 if scale <= 0 else min(1.0, max(0.0, act / scale))
    shown = escape(text).replace("\n", "\u21b5")
    return (f"<span class=\"tok{' at' if at else ''}\" style=\"background:rgba(255,140,0,{alpha:.2f})\" "
            f"title=\"{act:.3g}\">{shown}</span>")


def _context(ctx: dict, scale: float) -> str:
    toks = "".join(_token(t, a, scale, i == ctx["at"]) for i, (t, a) in enumerate(zip(ctx["tokens"], ctx["acts"])))
    return f"<div class=\"ctx\"><span class=\"val\">{ctx['value']:.3g}</span>{toks}</div>"


def histogram_svg(edges: list[float], counts: list[int], width: int = 340, height: int = 120,
                  mark: int | None = None, what: str = "") -> str:
    """Bars of a histogram over log10 `edges` as inline SVG (only the occupied range; bin `mark`
    highlighted). Every string in it is a number: nothing to escape."""
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return "<p>never fires on this corpus</p>"
    lo, hi = min(used + ([mark] if mark is not None else [])), max(used + ([mark] if mark is not None else [])) + 1
    top, n = max(counts), hi - lo
    bars = "".join(f"<rect x=\"{(i - lo) * width / n:.1f}\" y=\"{height - counts[i] * height / top:.1f}\" "
                   f"width=\"{max(width / n - 1, 1):.1f}\" height=\"{max(counts[i] * height / top, 2 if i == mark else 0):.1f}\" "
                   f"fill=\"{'#cf222e' if i == mark else '#e66100'}\">"
                   f"<title>10^{edges[i]:.2f}-10^{edges[i + 1]:.2f}: {counts[i]}{what}</title></rect>"
                   for i in range(lo, hi))
    return (f"<svg width=\"{width}\" height=\"{height + 16}\" role=\"img\">{bars}"
            f"<text x=\"0\" y=\"{height + 13}\" font-size=\"11\">{10 ** edges[lo]:.3g}</text>"
            f"<text x=\"{width}\" y=\"{height + 13}\" font-size=\"11\" text-anchor=\"end\">{10 ** edges[hi]:.3g}</text>"
            "</svg>")


def _logits(logits: dict | None) -> str:
    if logits is None:
        return "<p>no logit table: this hook does not write to the residual stream directly</p>"
    rows = "".join(f"<tr><td class=\"neg\">{escape(repr(b[0]))}</td><td class=\"neg\">{b[1]:+.3f}</td>"
                   f"<td class=\"pos\">{escape(repr(t[0]))}</td><td class=\"pos\">{t[1]:+.3f}</td></tr>"
                   for b, t in zip(logits["bottom"], logits["top"]))
    return f"<table><tr><th colspan=2>negative logits</th><th colspan=2>positive logits</th></tr>{rows}</table>"


def feature_page(page: dict, title: str) -> str:
    scale = page["max"] or 1.0
    stats = (f"<table><tr><td>density</td><td>{page['density']:.3%} ({page['count']} of {page['n_tokens']} tokens)"
             f"</td></tr><tr><td>max activation</td><td>{page['max']:.4g}</td></tr>")
    for key, label in (("loss_delta", "loss change when ablated (all tokens)"),
                       ("loss_delta_where_active", "loss change when ablated (where it acts)")):
        if key in page:
            stats += f"<tr><td>{label}</td><td>{page[key]:+.4g} nats</td></tr>"
    stats += "</table>"
    left = (f"<h3>Statistics</h3>{stats}<h3>Activation histogram (log scale, firing tokens)</h3>"
            f"{histogram_svg(page['hist_edges'], page['hist'])}"
            "<h3>Logits W<sub>dec</sub>[f] · W<sub>U</sub> (through the final norm's centring and gain)</h3>"
            f"{_logits(page['logits'])}")
    right = "<h3>Top activations</h3>" + "".join(_context(c, scale) for c in page["top"])
    for q in page["quantiles"]:
        right += (f"<h3>Firings at percentiles {q['quantile']} ({q['range'][0]:.3g} to {q['range'][1]:.3g})</h3>"
                  + "".join(_context(c, scale) for c in q["examples"]))
    body = (f"<h2>{escape(title)} · feature {page['feature']}</h2><p><a href=\"index.html\">all features</a></p>"
            f"<div class=\"cols\"><div class=\"left\">{left}</div><div class=\"right\">{right}</div></div>")
    return _page(f"feature {page['feature']}", body)


def index_page(pages: list[dict], title: str) -> str:
    rows = ""
    for p in pages:
        top = ", ".join(escape(repr(t)) for t, _ in (p["logits"] or {}).get("top", [])[:5])
        rows += (f"<tr><td><a href=\"feature_{p['feature']}.html\">{p['feature']}</a></td><td>{p['density']:.3%}</td>"
                 f"<td>{p['max']:.4g}</td><td>{p.get('loss_delta', float('nan')):+.4g}</td><td>{top}</td></tr>")
    body = (f"<h2>{escape(title)}</h2><table><tr><th>feature</th><th>density</th><th>max</th>"
            f"<th>loss change (ablated)</th><th>top logits</th></tr>{rows}</table>")
    return _page(title, body)
