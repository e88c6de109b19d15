"""The explorer's Starlette app. Runs are only read; every path a request names must lie inside the
outputs folders (symlinks resolved), or the request is refused (403).

    /                       start page: runs and sweeps          /api/runs     the same as JSON
    /run?path=&prompt=      a run's page and its prompt views    /api/prompt   the views as JSON
    /run?path=&inputs=      the arithmetic MLP on one input row  /api/row      the same as JSON
    /file?path=             a figure or report of a run          /static/plotly.min.js
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Route

from interp.errors import InterpError, RunDirError
from interp.explorer import pages
from interp.explorer.listing import inside, read_run, scan
from interp.explorer.views import Models, kind_of, prompt_views, row_views


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def jsonable(info) -> dict:
    return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k in ("figures", "reports") else v)
            for k, v in asdict(info).items() if k != "jobs"}


def create_app(roots: list[Path], device: str = "cpu", sae: dict | None = None) -> Starlette:
    """`sae`: a pretrained SAE for runs without one ({"path": ...} or {"release": ..., "id": ...})."""
    roots = [Path(r) for r in roots]
    models = Models(device, sae=sae)

    def run_info(request):
        """The run a request names: (RunInfo, None) or (None, error response)."""
        path = request.query_params.get("path", "")
        try:
            inside(path, roots)
        except RunDirError as e:
            return None, HTMLResponse(pages.page("refused", f"<p class='problem'>error: {e}</p>"), 403)
        info = read_run(Path(path))
        if info.problem:
            body = (f"<p><a href='/'>all runs</a></p><h1>{path}</h1><p class='problem'>This run cannot be opened: "
                    f"{info.problem}.</p>")
            return None, HTMLResponse(pages.page("run unavailable", body), 404 if not Path(path).is_dir() else 409)
        return info, None

    def compute(info, params) -> tuple[dict | None, str | None, object]:
        """(views, error message, loaded run) for the prompt or input row in `params`."""
        if "prompt" in params:   # browsers send a textarea's newlines as CRLF
            params["prompt"] = params["prompt"].replace("\r\n", "\n")
        with models.lock:
            loaded = models.get(info.path)
            started = time.perf_counter()
            try:
                if "inputs" in params:
                    result = row_views(loaded, params["inputs"])
                elif params.get("prompt"):
                    k = min(50, max(1, int(params.get("k", 5) or 5)))
                    result = prompt_views(loaded, params["prompt"], layer=int(params.get("layer", 0) or 0),
                                          head=int(params.get("head", 0) or 0), k=k)
                else:
                    return None, None, loaded
            except (InterpError, ValueError) as e:
                return None, str(e), loaded
            result["seconds"] = round(time.perf_counter() - started, 4)
            return result, None, loaded

    async def home(request):
        runs, sweeps = scan(roots)
        return HTMLResponse(pages.start_page(runs, sweeps, roots, pages.file_link, pages.run_link))

    async def api_runs(request):
        runs, sweeps = scan(roots)
        return JSONResponse({"runs": [jsonable(r) for r in runs],
                             "sweeps": [{**jsonable(s), "jobs": [jsonable(j) for j in s.jobs]} for s in sweeps]})

    async def run_page(request):
        info, refused = run_info(request)
        if refused:
            return refused
        params = dict(request.query_params)
        try:
            result, error, loaded = await run_in_threadpool(compute, info, params)
        except InterpError as e:   # the checkpoint cannot be loaded
            return HTMLResponse(pages.page("run unavailable", f"<p class='problem'>error: {e}</p>"), 409)
        model = loaded.run.model
        kind = kind_of(model)
        cfg = getattr(model, "cfg", None)
        n_layers, n_heads = (cfg.n_layers, cfg.n_heads) if kind == "transformer" else (0, 0)
        html = pages.run_page(info, kind, params, result, error, pages.file_link, n_layers, n_heads)
        if result is not None:
            html = html.replace("</body>", f"<p>answered in {result['seconds']:.3f} s</p></body>")
        return HTMLResponse(html, 400 if error else 200)

    async def api_views(request):
        info, refused = run_info(request)
        if refused:
            return JSONResponse({"error": "run unavailable or outside the outputs folders"}, refused.status_code)
        params = dict(request.query_params)
        if request.url.path == "/api/row":
            params.setdefault("inputs", "")
        elif not params.get("prompt"):
            return JSONResponse({"error": "the prompt is empty. Fix: pass prompt=<text>."}, 400)
        try:
            result, error, _ = await run_in_threadpool(compute, info, params)
        except InterpError as e:
            return JSONResponse({"error": str(e)}, 409)
        return JSONResponse({"error": error}, 400) if error else JSONResponse(result)

    async def file(request):
        path = request.query_params.get("path", "")
        try:
            resolved = inside(path, roots)
        except RunDirError as e:
            return JSONResponse({"error": str(e)}, 403)
        if not resolved.is_file():
            return JSONResponse({"error": f"{path} does not exist"}, 404)
        return FileResponse(resolved)

    async def plotly(request):
        return FileResponse(plotly_js(), media_type="text/javascript")

    return Starlette(routes=[Route("/", home), Route("/api/runs", api_runs), Route("/run", run_page),
                             Route("/api/prompt", api_views), Route("/api/row", api_views), Route("/file", file),
                             Route("/static/plotly.min.js", plotly)])

