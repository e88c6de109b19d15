"""The comparison table: one row per run, the parameters that differ, then the final metrics.

Written as CSV (full precision), Markdown and one self-contained HTML page whose columns sort on
a click (a few lines of inline JavaScript, no network).
"""

from __future__ import annotations

import csv
import fnmatch
import html
import io
import re
from pathlib import Path

from interp.compare.runs import Run
from interp.files import atomic_write_text

# Final metrics shown by default: results, not bookkeeping; per-head analysis scores (L1H0) stay in
# metrics.json (their per-layer maxima are kept).
DEFAULT_METRICS = ("val/*", "test/*", "train/*", "analysis/*", "trainer/global_step")
_PER_HEAD = re.compile(r"/L\d+H\d+$")
# SAE sweeps read best with these first.
_FIRST = ("val/loss", "val/l0", "val/explained_variance", "val/ce_loss_score")


def metric_columns(runs: list[Run], patterns=DEFAULT_METRICS) -> list[str]:
    keys = {k for r in runs for k in r.metrics
            if any(fnmatch.fnmatchcase(k, p) for p in patterns) and not _PER_HEAD.search(k)}
    return [k for k in _FIRST if k in keys] + sorted(keys - set(_FIRST))


class Table:
    def __init__(self, runs: list[Run], params: list[str], metrics: list[str]):
        self.columns = ["run", "status", *params, *metrics, "error"]   # error: a failed run's, or why it is incomplete
        self.n_params = len(params)
        self.rows = [[r.name, r.status, *(r.params.get(k) for k in params), *(r.metrics.get(k) for k in metrics),
                      f"{r.error_type}: {r.error}" if r.error_type else r.error or r.note] for r in runs]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([["" if v is None else v for v in row] for row in self.rows])
        return out.getvalue()

    def markdown(self, note: str = "") -> str:
        lines = [f"| {' | '.join(map(_md_cell, self.columns))} |", f"|{'---|' * len(self.columns)}"]
        lines += [f"| {' | '.join(map(_md_cell, row))} |" for row in self.rows]
        return (f"{note}\n\n" if note else "") + "\n".join(lines) + "\n"

    def html(self, title: str, note: str = "") -> str:
        head = "".join(f"<th onclick='sortBy({i})'>{html.escape(c)}</th>" for i, c in enumerate(self.columns))
        body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>\n" for row in self.rows)
        note = f"<p>{html.escape(note)}</p>" if note else ""
        return _PAGE.format(title=html.escape(title), note=note, head=head, body=body)

    def write(self, out_dir: Path, title: str, note: str = "") -> dict[str, Path]:
        paths = {"csv": out_dir / "table.csv", "md": out_dir / "table.md", "html": out_dir / "table.html"}
        atomic_write_text(paths["csv"], self.csv())
        atomic_write_text(paths["md"], self.markdown(note))
        atomic_write_text(paths["html"], self.html(title, note))
        return paths


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _md_cell(value) -> str:
    return _fmt(value).replace("|", "\\|")


def _td(value) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td data-v='{value!r}'>{html.escape(_fmt(value))}</td>" if number else f"<td>{html.escape(_fmt(value))}</td>"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }}
th {{ cursor: pointer; background: #f0f0f0; position: sticky; top: 0; }}
th:hover {{ background: #ddd; }}
</style></head>
<body><h2>{title}</h2>{note}<p>Click a column's header to sort by it (again: reverse).</p>
<table id="t"><thead><tr>{head}</tr></thead><tbody>
{body}</tbody></table>
<script>
let last = -1, asc = true;
function key(td) {{ return td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent; }}
function sortBy(i) {{
  asc = (i === last) ? !asc : true; last = i;
  const body = document.querySelector("#t tbody");
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {{
    const x = key(a.cells[i]), y = key(b.cells[i]);
    if (x === "" || y === "") return (x === "") - (y === "");   // empty cells last
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c;
  }});
  rows.forEach(r => body.appendChild(r));
}}
</script></body></html>
"""
