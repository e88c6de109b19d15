// The explorer's only script (the pages' Content-Security-Policy refuses any other): it draws the plotly
// figures, re-submits a form when a menu marked data-submit changes, sorts tables marked sortable, and
// sends a form by POST when its query string would be too long for a URL (state stays in the URL otherwise).
"use strict";

for (const div of document.querySelectorAll("div[data-figure]")) {
  const fig = JSON.parse(div.dataset.figure);
  Plotly.newPlot(div, fig.data, fig.layout, JSON.parse(div.dataset.config || "{}"));
}

for (const menu of document.querySelectorAll("select[data-submit]")) {
  menu.addEventListener("change", () => menu.form.requestSubmit());
}

const URL_LIMIT = 6000;   // characters: servers and proxies drop longer request lines
for (const form of document.querySelectorAll("form[data-post-when-long]")) {
  form.addEventListener("submit", () => {
    const query = new URLSearchParams(new FormData(form)).toString();
    form.method = query.length > URL_LIMIT ? "post" : "get";
  });
}

// Sorting: a click on a header (a button inside it, so keyboards reach it) orders the rows by that column;
// numbers by data-value when a cell has one, else by text.
function cellKey(cell) {
  const raw = cell.dataset.value ?? cell.textContent.trim();
  const n = Number(raw);
  return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
}
for (const table of document.querySelectorAll("table.sortable")) {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, col) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    button.title = "sort by " + th.textContent;
    th.replaceChildren(button);
    button.addEventListener("click", () => {
      const down = th.getAttribute("aria-sort") !== "descending";
      heads.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      const body = table.tBodies[0];
      const rows = [...body.rows];
      rows.sort((a, b) => {
        const x = cellKey(a.cells[col]), y = cellKey(b.cells[col]);
        const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
        return down ? -order : order;
      });
      body.append(...rows);
    });
  });
}
