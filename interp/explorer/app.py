"""The explorer's Starlette app. Runs are only read, except for the workbench's caches (`<run>/explorer/`);
every path a request names must lie inside the outputs folders (symlinks resolved), or the request is
refused (403), and so must every file a run's loading reads (its checkpoint, config, sae/, saes/) and
its cache folder.

    /                       start page: runs and sweeps          /api/runs     the same as JSON
    /run?path=&prompt=      a run's page and its prompt views    /api/prompt   the views as JSON
    /run?path=&inputs=      the arithmetic MLP on one input row  /api/row      the same as JSON
    /file?path=             a figure or report of a run          /static/plotly.min.js, /static/explorer.{js,css}
    /graph, /features, /feature, /search, /steer, /sweep, /compare: the feature workbench (workbench_routes)

Pages take their parameters from the query string (links: the forms GET, so a view's state is its URL) or
a POST body (a form, or JSON): a form whose text is too long for a URL is POSTed by explorer.js. A bad parameter is a
4xx whose message says which and what it takes; every response carries the security headers below.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from interp.errors import ConfigError, InterpError
from interp.explorer import pages, workbench_routes
from interp.explorer.render import STATIC
from interp.explorer.listing import BadPath, Refused, clip, inside, read_run, require_inside, scan
from interp.explorer.views import Models, kind_of, prompt_views, row_views

MAX_BODY = 1 << 20   # bytes of a POST body: a 1 MB prompt is ~250k tokens, far beyond any model's context
K_MAX = 50

# Pages run only the explorer's own scripts (/static/*.js: no inline script, no handler attribute, no
# eval), load nothing from elsewhere and post only to the explorer. Inline styles stay allowed: plotly.js
# adds its own <style> and style attributes, and with nothing loadable from elsewhere CSS cannot leak.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
# A run's files (/file): HTML reports are self-contained, plotly.js inlined, so their inline scripts run,
# but sandboxed (an opaque origin: they cannot read the explorer's pages or call its API) and unable to
# connect anywhere.
FILE_POLICY = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
               "style-src 'unsafe-inline'; img-src 'self' data: blob:; font-src data:; connect-src 'none'; "
               "form-action 'none'; base-uri 'none'; frame-ancestors 'self'")


def security_headers(path: str) -> dict[str, str]:
    return {"Content-Security-Policy": FILE_POLICY if path == "/file" else PAGE_POLICY,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class SecurityHeaders:
    """Adds `security_headers` to every response, error pages included (pure ASGI: streams untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def secured(message):
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(security_headers(scope["path"]))
            await send(message)

        await self.app(scope, receive, secured)


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def jsonable(info) -> dict:
    return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k in ("figures", "reports") else v)
            for k, v in asdict(info).items() if k != "jobs"}


async def params_of(request) -> dict[str, str]:
    """The query string's parameters, and a POST body's (a form or a JSON object), which win; a prompt's
    newlines as the user typed them (browsers send a textarea's as CRLF)."""
    params = await _raw_params(request)
    if "prompt" in params:
        params["prompt"] = params["prompt"].replace("\r\n", "\n")
    return params


async def _raw_params(request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method != "POST":
        return params
    body, size = bytearray(), 0
    async for chunk in request.stream():   # read to the end even when too large: a browser shows the 413
        size += len(chunk)
        if size <= MAX_BODY:
            body += chunk
    if size > MAX_BODY:
        raise HTTPException(413, f"the request body is {size} bytes; the explorer takes at most {MAX_BODY} (a "
                                 "prompt beyond the model's context is cut to it anyway). Fix: send a shorter prompt.")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError as e:
            raise HTTPException(400, f"the body is not valid JSON ({e}).") from None
        if not isinstance(data, dict):
            raise HTTPException(400, 'the JSON body must be an object, e.g. {"path": "<run>", "prompt": "..."}.')
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise HTTPException(400, f"{clip(str(name))} must be a string or an integer; "
                                         f"got {type(value).__name__}.")
            params[str(name)] = str(value)
    elif kind in ("application/x-www-form-urlencoded", ""):
        params.update(QueryParams(body.decode("utf-8", "replace")))
    else:
        raise HTTPException(415, f"a POST body must be a form (application/x-www-form-urlencoded) or JSON "
                                 f"(application/json); got {clip(kind)}.")
    return params


def integer(params: dict, name: str, default: int, low: int, high: int, what: str = "") -> int:
    """params[name] as an integer in low..high (`default` when absent or empty); ConfigError otherwise."""
    raw = str(params.get(name, "")).strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:   # also more than 4300 digits
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}{what}; got {clip(raw)}.")
    return value


def prompt_options(model, params: dict) -> dict:
    """layer, head and k of a prompt request, checked against the model."""
    k = integer(params, "k", 5, 1, K_MAX, " (how many next tokens to list)")
    if kind_of(model) != "transformer":   # no attention view: layer and head are not used
        return {"layer": 0, "head": 0, "k": k}
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    return {"layer": integer(params, "layer", 0, 0, n_layers - 1, f" (this model has {n_layers} layers)"),
            "head": integer(params, "head", 0, 0, n_heads - 1, f" (this model has {n_heads} heads per layer)"),
            "k": k}


def create_app(roots: list[Path], device: str = "cpu", sae: dict | None = None) -> Starlette:
    """`sae`: a pretrained SAE for runs without one ({"path": ...} or {"release": ..., "id": ...})."""
    roots = [Path(r) for r in roots]
    models = Models(device, sae=sae, roots=roots)

    def problem(request, status: int, message: str) -> Response:
        """An error as the route answers: JSON for /api/* and /file, an HTML page otherwise (escaped)."""
        if request.url.path.startswith("/api/") or request.url.path == "/file":
            return JSONResponse({"error": message}, status)
        return HTMLResponse(pages.error_page(status, message), status)

    def run_info(params: dict):
        """The run `params` name, if it lies inside the roots and can be opened; raises otherwise."""
        path = params.get("path", "")
        inside(path, roots)              # BadPath (400) or Refused (403)
        require_inside(Path(path), roots)   # its checkpoint, config or sae/ linking elsewhere: Refused
        info = read_run(Path(path))
        if info.problem:
            raise HTTPException(404 if not Path(path).is_dir() else 409,
                                f"the run {clip(path)} cannot be opened: {info.problem}.")
        return info

    def tabs(info, loaded=None) -> list:
        """The run's tabs; a run given the explorer's pretrained SAE has the feature pages too."""
        return pages.run_tabs(info.path, True if loaded is not None and loaded.run.dictionaries else None)

    def compute(info, params) -> tuple[dict | None, str | None, object]:
        """(views, error message, loaded run) for the prompt or input row in `params`."""
        with models.lock:
            loaded = models.get(info.path)
            started = time.perf_counter()
            try:
                if "inputs" in params:
                    result = row_views(loaded, params["inputs"])
                elif params.get("prompt"):
                    result = prompt_views(loaded, params["prompt"], **prompt_options(loaded.run.model, params))
                else:
                    return None, None, loaded
            except (InterpError, ValueError) as e:
                return None, str(e), loaded
            result["seconds"] = round(time.perf_counter() - started, 4)
            return result, None, loaded

    async def home(request):
        runs, sweeps = scan(roots)
        return HTMLResponse(pages.start_page(runs, sweeps, roots))

    async def api_runs(request):
        runs, sweeps = scan(roots)
        return JSONResponse({"runs": [jsonable(r) for r in runs],
                             "sweeps": [{**jsonable(s), "jobs": [jsonable(j) for j in s.jobs]} for s in sweeps]})

    async def run_page(request):
        params = await params_of(request)
        info = run_info(params)
        result, error, loaded = await run_in_threadpool(compute, info, params)
        model = loaded.run.model
        kind = kind_of(model)
        n_layers, n_heads = (model.cfg.n_layers, model.cfg.n_heads) if kind == "transformer" else (0, 0)
        html = pages.run_page(info, kind, params, result, error, n_layers, n_heads, tabs(info, loaded))
        return HTMLResponse(html, 400 if error else 200)

    async def api_views(request):
        params = await params_of(request)
        info = run_info(params)
        if request.url.path == "/api/row":
            params.setdefault("inputs", "")
        elif not params.get("prompt"):
            raise HTTPException(400, "the prompt is empty. Fix: pass prompt=<text>.")
        result, error, _ = await run_in_threadpool(compute, info, params)
        return JSONResponse({"error": error}, 400) if error else JSONResponse(result)

    async def file(request):
        path = request.query_params.get("path", "")
        resolved = inside(path, roots)
        if not resolved.is_file():
            raise HTTPException(404, f"{clip(path)} is not a file. Fix: open one listed on the start page.")
        if not os.access(resolved, os.R_OK):
            raise HTTPException(403, f"{clip(path)} is not readable (its permissions).")
        return FileResponse(resolved)

    async def plotly(request):
        return FileResponse(plotly_js(), media_type="text/javascript")

    def answer(status: int, prefix: str = ""):
        async def handler(request, exc):
            return problem(request, status, prefix + str(exc))
        return handler

    async def http_error(request, exc):
        response = problem(request, exc.status_code, exc.detail)
        response.headers.update(exc.headers or {})   # 405's Allow
        return response

    async def server_error(request, exc):   # answered outside the middleware: the headers are set here
        response = problem(request, 500, f"the explorer failed ({type(exc).__name__}); the traceback is in "
                                         "the terminal that runs `analyze.py serve`.")
        response.headers.update(security_headers(request.url.path))
        return response

    errors = {HTTPException: http_error, BadPath: answer(400), Refused: answer(403),
              InterpError: answer(409, "the run cannot be loaded: "), Exception: server_error}
    return Starlette(routes=[Route("/", home), Route("/api/runs", api_runs),
                             Route("/run", run_page, methods=["GET", "POST"]),
                             Route("/api/prompt", api_views, methods=["GET", "POST"]),
                             Route("/api/row", api_views, methods=["GET", "POST"]), Route("/file", file),
                             *workbench_routes.routes(models, run_info, params_of, integer),
                             Route("/static/plotly.min.js", plotly),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")],
                     middleware=[Middleware(SecurityHeaders)], exception_handlers=errors)
