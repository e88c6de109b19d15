"""Interactive attention view: hover a token, see where every head looks from it.

One self-contained HTML file (inline data and JS, no network), so it opens
offline and can be attached to W&B or mailed. A toggle switches between the
weights a_ij and the norm-based attention ||a_ij f(x_j)|| (attention.py).
"""

import json
from pathlib import Path

from interp.analyses.common.attention import attention_maps
from interp.analyses.common.inputs import prompt_tokens, require_attention, require_lm

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>attention</title>
<style>
body{font-family:sans-serif;margin:1em}
.tok{display:inline-block;font-family:monospace;white-space:pre;padding:1px 2px;margin:1px;border-radius:3px}
#prompt .tok{cursor:pointer;border:1px solid #ddd}
.row{margin:2px 0}.lab{display:inline-block;width:4.5em;color:#555;font-size:12px}
</style></head><body>
<p>Hover a token in the prompt: each row shows where one head looks <b>from</b> it
(darker = more, scaled per row; the exact value is in each token's tooltip).
Show <select id="kind"><option value="weights">attention weights a</option>
<option value="norms">norm-based ||a f(x)|| (Kobayashi et al. 2020)</option></select></p>
<div id="prompt" class="row"></div><hr><div id="heads"></div>
<script>
const D = __DATA__;
const kind = document.getElementById("kind"), heads = document.getElementById("heads");
let query = D.tokens.length - 1;
function tok(text) { const s = document.createElement("span"); s.className = "tok"; s.textContent = text; return s; }
const prompt = D.tokens.map((t, i) => {
  const s = tok(t); s.onmouseenter = () => { query = i; draw(); }; return s; });
document.getElementById("prompt").append(...prompt);
function draw() {
  prompt.forEach((s, i) => s.style.background = i === query ? "#ffd54f" : "");
  const rows = [];
  D[kind.value].forEach((layer, l) => layer.forEach((head, h) => {
    const a = head[query], top = Math.max(...a) || 1, row = document.createElement("div");
    row.className = "row";
    const lab = tok("L" + l + "H" + h); lab.className = "lab";
    row.append(lab, ...D.tokens.map((t, j) => {
      const s = tok(t); s.style.background = "rgba(33,102,172," + (a[j] / top).toFixed(3) + ")";
      s.title = a[j].toPrecision(3); return s; }));
    rows.push(row); }));
  heads.replaceChildren(...rows);
}
kind.onchange = draw; draw();
</script></body></html>
"""


def attention_page(tokens: list[str], weights, norms) -> str:
    """The HTML page for token strings and [layer, head, q, k] weights and norms."""
    def rounded(t):
        return [[[[float(f"{x:.3g}") for x in q] for q in head] for head in layer] for layer in t.tolist()]

    data = json.dumps({"tokens": tokens, "weights": rounded(weights), "norms": rounded(norms)})
    return _PAGE.replace("__DATA__", data.replace("</", "<\\/"))   # a token "</script>" must not end the script


def run(model, datamodule, out_dir, prompt: str | None = None, max_positions: int = 64) -> dict[str, float]:
    """Writes `attention.html`; no numbers (attention_grid reports them)."""
    require_attention(model, "attention_html")
    require_lm(datamodule, "attention_html")
    tokens = prompt_tokens(model, datamodule, prompt, max_positions)
    weights, norms = attention_maps(model, tokens)
    path = Path(out_dir) / "attention.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(attention_page(datamodule.tokenizer.decode_tokens(tokens[0]), weights, norms), encoding="utf-8")
    return {}
