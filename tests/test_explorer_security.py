"""The explorer against hostile input: every route, with script payloads, NUL bytes, traversal and huge
values in every parameter, and runs whose names, config values and file names are themselves payloads.
Nothing is echoed unescaped, nothing is a 500, every response carries the Content-Security-Policy.

These need no trained model (a run without a checkpoint is refused before any parameter is used);
tests/test_explorer.py sends the same values to a trained run's prompt views, and refuses its
checkpoint linked from outside the outputs folders.
"""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

PAYLOADS = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "'; alert(1); '",
            "'><svg onload=alert(1)>", "</textarea><script>alert(1)</script>"]
# Payloads that also make file names (no '/'): set window.__xss, which the browser test checks.
NAMED = ["<img src=x onerror=window.__xss=1>", "\"><svg onload=window.__xss=1>"]
OWN_SCRIPTS = {"/static/plotly.min.js", "/static/explorer.js"}
LONG = "a" * 60_000   # in a URL (httpx refuses a query over 64 kB; a POST body takes more, see below)


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self, html: str):
        super().__init__()
        self.tags = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def assert_inert(html: str, values: list[str]) -> None:
    """No script but the explorer's own, no handler attribute, no link off the explorer, and none of
    `values` (each holds a quote or '<') anywhere as it was sent."""
    for tag, attrs in Tags(html).tags:
        assert tag not in ("svg", "object", "embed"), (tag, attrs)
        if tag in ("img", "iframe"):   # only a run's own files, served sandboxed by /file
            assert attrs.get("src", "").startswith("/file?"), (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert attrs.get("src") in OWN_SCRIPTS, attrs
        for name in ("href", "src", "action"):
            assert attrs.get(name, "/").startswith("/"), (tag, attrs)
    for value in values:
        assert value not in html, value[:80]


def assert_answered(r, values=(), status: int | None = None) -> None:
    assert r.status_code < 500, r.text[:500]
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text[:300])
    assert "default-src" in r.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    if r.headers.get("content-type", "").startswith("text/html") and r.url.path != "/file":   # a run's own file
        assert_inert(r.text, [v for v in values if isinstance(v, str) and any(c in v for c in "<'\"")])


@pytest.fixture
def hostile(tmp_path):
    """outputs/ with two runs (no checkpoint) named like payloads, their config values, metrics and figure
    names too (the second's config values are a dict, a list and a number), a symlink loop, and a sweep
    whose comparison report tries to reach the explorer. Returns (outputs, multirun, the first run)."""
    outputs, multirun = tmp_path / "outputs", tmp_path / "multirun"
    for i, name in enumerate(NAMED):
        run = outputs / "2026-01-01" / name
        (run / "figures" / name).mkdir(parents=True)
        (run / "checkpoints").mkdir()
        choices = {"task": PAYLOADS[0], "model": PAYLOADS[1], "data": PAYLOADS[2]} if i == 0 else \
            {"task": {"<b>": PAYLOADS[0]}, "model": [PAYLOADS[3]], "data": 3}   # not strings at all
        (run / "config.yaml").write_text(json.dumps({"run_meta": {"choices": choices}}))
        (run / "metrics.json").write_text(json.dumps({"val/loss": PAYLOADS[4], "val/acc": 0.5}))
        (run / "figures" / name / f"{name}.png").write_bytes(b"\x89PNG")
    (outputs / "loop").symlink_to(outputs / "loop")
    sweep = multirun / "2026-01-02" / PAYLOADS[1].replace("/", "")
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / f"comparison{NAMED[0]}.html").write_text(
        "<!doctype html><body><p id=report>report</p><script>"
        "document.body.dataset.ran = 'yes';"
        "try { localStorage.x = 1; document.body.dataset.origin = 'explorer' }"
        " catch (e) { document.body.dataset.origin = 'opaque' }"
        "fetch('/api/runs').then(() => { document.body.dataset.fetch = 'ok' },"
        " () => { document.body.dataset.fetch = 'refused' });</script></body>")
    return outputs, multirun, outputs / "2026-01-01" / NAMED[0]


@pytest.fixture
def client(hostile):
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    return TestClient(create_app(list(hostile[:2])))


def hostile_paths(outputs: Path, run: Path) -> list[str]:
    return [*PAYLOADS, *(f"{outputs}/{p.replace('/', '')}" for p in PAYLOADS), f"{run}\0", "\0", f"{outputs}\0/x",
            "../../etc/passwd", f"{outputs}/../../etc/passwd", "/etc/passwd", "", LONG, "a" * 100_000,
            f"{outputs}/{'a' * 300}", str(outputs / "loop"), str(outputs / "loop" / "x"), "javascript:alert(1)"]


def test_start_page_and_listing_escape_hostile_run_names_and_values(client):
    page = client.get("/")
    assert_answered(page, PAYLOADS + NAMED, 200)
    assert page.text.count('class="run"') == 2 and "&lt;img src=x onerror=window.__xss=1&gt;" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text   # shown, as text
    listing = client.get("/api/runs")
    assert_answered(listing, status=200)
    assert PAYLOADS[0] in [r["task"] for r in listing.json()["runs"]]   # JSON keeps the values as they are


GET_ONLY = ("/file", "/sweep")


@pytest.mark.parametrize("route", ["/run", "/api/prompt", "/api/row", "/file", "/features", "/feature", "/search",
                                   "/steer", "/graph", "/api/feature", "/api/search", "/sweep"])
def test_hostile_paths_are_refused_escaped_on_every_route(client, hostile, route):
    outputs, _, run = hostile
    for path in hostile_paths(outputs, run):
        if route in GET_ONLY and len(path) > len(LONG):
            continue
        params = {"path": path, "prompt": PAYLOADS[0], "inputs": PAYLOADS[1]}
        r = client.get(route, params=params) if len(path) <= len(LONG) else client.post(route, data=params)
        assert_answered(r, [path, *PAYLOADS])
        assert 400 <= r.status_code < 500, (path[:80], r.status_code)
        if "\0" in path or len(path) > 4096 or not path:
            assert r.status_code == 400, (path[:80], r.status_code, r.text[:300])
        if path.startswith(("<", "\"", "'", "../", "/etc", "javascript")) or "etc/passwd" in path:
            assert r.status_code == 403, (path[:80], r.status_code)
        if route not in GET_ONLY:   # a POSTed form and JSON body are read the same way
            for post in ({"data": {"path": path, "prompt": PAYLOADS[0]}}, {"json": {"path": path, "k": 3}}):
                assert client.post(route, **post).status_code == r.status_code
    for name in ("NUL", "loop", "long"):   # the message says what was wrong
        path = {"NUL": f"{run}\0", "loop": str(outputs / "loop"), "long": LONG}[name]
        message = client.get(route, params={"path": path}).text
        assert {"NUL": "NUL byte", "loop": "cannot be resolved", "long": "longer than a file path"}[name] in message
        assert len(message) < 5000   # a 100 kB value is not echoed whole


def test_hostile_values_for_every_parameter_of_an_unloadable_run(client, hostile):
    """The run exists but has no checkpoint: 409, with the payload-named path escaped."""
    run = hostile[2]
    values = [*PAYLOADS, "\0", "-1", "1e9", "9" * 5000, LONG]
    for route in ("/run", "/api/prompt", "/api/row", "/features", "/search", "/steer"):
        for name in ("prompt", "inputs", "layer", "head", "k"):
            for value in values:
                params = {"path": str(run), "prompt": "a", name: value}
                r = client.get(route, params=params)
                assert_answered(r, [str(run), value], 409)
                assert client.post(route, data=params).status_code == 409
    page = client.get("/run", params={"path": str(run)}).text
    assert "no checkpoints/last.ckpt" in page and "&lt;img src=x onerror=window.__xss=1&gt;" in page


def test_files_are_sandboxed_and_static_routes_carry_the_policy(client, hostile):
    _, multirun, run = hostile
    [report] = (multirun / "2026-01-02").glob("*/comparison*.html")
    r = client.get("/file", params={"path": str(report)})
    assert_answered(r, status=200)
    policy = r.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts;") and "allow-same-origin" not in policy
    assert "connect-src 'none'" in policy
    png = client.get("/file", params={"path": str(next(run.glob("figures/*/*.png")))})
    assert_answered(png, status=200)
    for url in ("/static/plotly.min.js", "/static/explorer.js"):
        js = client.get(url, params={"path": PAYLOADS[0]})
        assert_answered(js, status=200)
        assert js.headers["content-type"].startswith("text/javascript")
    page_policy = client.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in page_policy and "unsafe-inline" not in page_policy.split("style-src")[0]
    for method, url in (("get", f"/nope/{PAYLOADS[0]}"), ("post", "/file"), ("post", "/"), ("delete", "/run")):
        assert_answered(getattr(client, method)(url), [PAYLOADS[0]])


def test_bodies_too_large_or_malformed_are_4xx_with_a_message(client, hostile):
    run = str(hostile[2])
    form = {"content-type": "application/x-www-form-urlencoded"}
    big = client.post("/run", content=b"prompt=" + b"x" * (1 << 20), headers=form)
    assert_answered(big, status=413)
    assert "at most 1048576" in big.text
    assert client.post("/api/prompt", json={"path": run, "prompt": "x" * (1 << 20)}).status_code == 413
    for body, ctype, status, says in (
            (b"{not json", "application/json", 400, "not valid JSON"),
            (b"[1, 2]", "application/json", 400, "must be an object"),
            (json.dumps({"path": run, "prompt": ["a"]}).encode(), "application/json", 400, "string or an integer"),
            (json.dumps({"path": "\ud800"}).encode(), "application/json", 400, "not valid text"),
            (b"path=x", "multipart/form-data; boundary=x", 415, "must be a form"),
            (f"path={PAYLOADS[1]}".encode(), "text/html", 415, "must be a form")):
        for route in ("/run", "/api/prompt"):
            r = client.post(route, content=body, headers={"content-type": ctype})
            assert_answered(r, PAYLOADS, status)
            assert says in r.text, r.text[:300]


@pytest.mark.parametrize("name", ["checkpoints/last.ckpt", "checkpoints", "config.yaml", "metrics.json",
                                  "sae", "sae/cfg.json", "saes", "saes/blocks.0.hook_mlp_out/cfg.json", "explorer",
                                  "dangling"])
def test_run_files_linking_outside_the_roots_are_refused_before_loading(tmp_path, name):
    """Any file that loading a run reads, linked to a file elsewhere: 403, and the start page says why.
    (tests/test_explorer.py does this with a trained run's real checkpoint.)"""
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    run = outputs / NAMED[0]
    for file, text in (("config.yaml", "task: {name: lm}"), ("metrics.json", "{}"), ("checkpoints/last.ckpt", "x"),
                       ("sae/cfg.json", "{}"), ("saes/blocks.0.hook_mlp_out/cfg.json", "{}"), ("explorer/x.pt", "x")):
        for root in (run, elsewhere):
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).write_text(text)
    client = TestClient(create_app([outputs]))
    assert client.get("/api/runs").json()["runs"][0]["problem"] is None   # not linked: it would be loaded
    link = run / ("checkpoints/last.ckpt" if name == "dangling" else name)
    shutil.rmtree(link) if link.is_dir() else link.unlink()
    link.symlink_to(elsewhere / ("gone" if name == "dangling" else name))
    for r in (client.get("/run", params={"path": str(run), "prompt": "a"}),
              client.post("/api/prompt", data={"path": str(run), "prompt": "a"}),
              client.get("/features", params={"path": str(run)})):
        assert_answered(r, [str(run)], 403)
        assert "outside the outputs folders" in r.text and "Fix: copy the file into the run" in r.text
    [listed] = client.get("/api/runs").json()["runs"]
    assert "outside the outputs folders" in listed["problem"]
    assert "/run?" not in client.get("/").text   # listed, not linked


def test_an_sae_run_whose_base_run_lies_outside_the_roots_is_refused(tmp_path):
    """Loading an SAE run unpickles its base run's checkpoint, named in its config.yaml: that must lie inside
    the outputs folders too."""
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere" / "base"
    for run in (outputs / "sae_run", elsewhere):
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_text("x")
        (run / "metrics.json").write_text("{}")
    (elsewhere / "config.yaml").write_text("task: {name: lm}")
    (outputs / "sae_run" / "config.yaml").write_text(json.dumps({"task": {"name": "sae"}, "base": {"run": str(elsewhere)}}))
    client = TestClient(create_app([outputs]))
    for route in ("/run", "/features", "/api/search"):
        r = client.get(route, params={"path": str(outputs / "sae_run"), "prompt": "a"})
        assert_answered(r, status=403)
        assert "base run" in r.text and "outside the outputs folders" in r.text
    [listed] = client.get("/api/runs").json()["runs"]
    assert "outside the outputs folders" in listed["problem"]
    assert TestClient(create_app([outputs, elsewhere.parent])).get("/api/runs").json()["runs"][0]["problem"] is None


@pytest.mark.slow
def test_browser_runs_no_injected_script_and_sandboxes_reports(hostile, train_env):
    """Chromium on the pages above: a payload that ran would set window.__xss or open a dialog. A report
    under /file (plotly.js inlined, as interp.viz writes them) still renders, sandboxed."""
    import plotly.graph_objects as go
    from test_explorer import CHROMIUM, browser_or_skip, explorer

    from interp.viz import plotly_divs

    sync_playwright = browser_or_skip()
    outputs, multirun, run = hostile
    plot = run / "figures" / "report.html"
    plot.write_text(f"<html><body>{plotly_divs([go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]))])}</body></html>")
    [report] = (multirun / "2026-01-02").glob("*/comparison*.html")
    payload = "<script>window.__xss=1</script><img src=x onerror=window.__xss=1>"
    with explorer(train_env, outputs, multirun) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        dialogs, refused = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(url)
        assert page.locator("tr.run").count() == 2 and "onerror=window.__xss=1" in page.inner_text("body")
        for path in (payload, f"{outputs}/{payload.replace('/', '')}", f"{run}\0", str(run)):
            for route in ("file", "api/prompt", "run"):   # the run page last
                page.goto(f"{url}{route}?{urlencode({'path': path})}")
                assert page.evaluate("window.__xss") is None, (route, path)
        assert "no checkpoints/last.ckpt" in page.inner_text("body")
        assert dialogs == [] and refused == []   # nothing even tried to run
        page.goto(f"{url}file?{urlencode({'path': str(plot)})}")
        page.wait_for_selector(".main-svg")
        page.goto(f"{url}file?{urlencode({'path': str(report)})}")
        page.wait_for_function("document.body.dataset.fetch !== undefined")
        assert page.evaluate("({...document.body.dataset})") == {"ran": "yes", "origin": "opaque", "fetch": "refused"}
        assert any("connect-src 'none'" in m for m in refused), refused   # the report's fetch
        browser.close()
