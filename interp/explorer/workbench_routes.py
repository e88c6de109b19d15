"""The feature workbench's routes: a run's feature list, feature pages, search by text and steering, and a
sweep's page with two runs side by side. Every parameter is in the URL (GET; the forms POST only a text
too long for one), so a view is shared as a link and the back button works.

    /features?path=&dict=&sort=&n=        a dictionary's features, sortable         /api/features
    /feature?path=&dict=&feature=         one feature's page                        /api/feature
    /search?path=&prompt=&top=            which features fire on which token        /api/search
    /steer?path=&dict=&feature=&scale=&prompt=&tokens=   steering and ablation      /api/steer
    /graph?path=&prompt=&target=&node_threshold=&edge_threshold=   an attribution graph (per-layer transcoders)
    /sweep?path=                          a sweep's jobs and comparison
    /compare?a=&b=&prompt=                two runs side by side on one prompt
"""

from __future__ import annotations

import math
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from interp.errors import ConfigError, InterpError
from interp.explorer import pages, workbench
from interp.explorer.listing import clip, inside, is_run_dir, overrides_of, read_run, scan


def number(params: dict, name: str, default: float) -> float:
    raw = str(params.get(name, "")).strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > 1e6:
        raise ConfigError(f"{name} must be a number (at most 1e6 in size); got {clip(raw)}.")
    return value


def routes(models, run_info, params_of, integer) -> list[Route]:
    """The routes, given the app's loaded models, its run check, its parameter reader and integer check."""

    async def serve(request, work, show, *, needs: str | None = None):
        """`work(loaded, params)` in a worker thread (one at a time: the models are shared); `show(info,
        params, result, error, names)` the page, or the JSON of the result for /api/*. With `needs`, an
        absent parameter shows the empty form instead of working."""
        params = await params_of(request)
        info = run_info(params)
        api = request.url.path.startswith("/api/")

        def call():
            with models.lock:
                loaded = models.get(info.path)
                names = list(workbench.dictionaries(loaded))
                if needs and not params.get(needs):
                    if api:
                        return names, None, f"{needs} is empty. Fix: pass {needs}=<...>."
                    return names, None, None
                try:
                    return names, work(loaded, params), None
                except (InterpError, ValueError) as e:
                    return names, None, str(e)

        names, result, error = await run_in_threadpool(call)
        if api:
            return JSONResponse({"error": error}, 400) if error else JSONResponse(result)
        return HTMLResponse(show(info, params, result, error, names), 400 if error else 200)

    def error_or(page):
        """A page that has nothing to show without its result: the error page instead."""
        def show(info, params, result, error, names):
            return pages.error_page(400, error) if error else page(info, params, result, names)
        return show

    async def features(request):
        return await serve(request, lambda loaded, p: workbench.feature_list(
            loaded, p.get("dict"), p.get("sort") or "max", integer(p, "n", workbench.LIST_DEFAULT, 1, 1 << 24)),
            error_or(pages.features_page))

    async def feature(request):
        def work(loaded, p):
            if not str(p.get("feature", "")).strip():
                raise ConfigError("no feature given. Fix: feature=<index> (the feature list links every one).")
            return workbench.feature_view(loaded, p.get("dict"), integer(p, "feature", 0, 0, (1 << 31) - 1))
        return await serve(request, work, error_or(lambda info, p, result, names: pages.feature_page(info, result, names)))

    async def search(request):
        def work(loaded, p):
            return workbench.search_view(loaded, p["prompt"], integer(p, "top", workbench.SEARCH_TOP, 1, 20))

        def show(info, p, result, error, names):
            try:
                top = integer(p, "top", workbench.SEARCH_TOP, 1, 20)
            except ConfigError:   # the error says so
                top = workbench.SEARCH_TOP
            return pages.search_page(info, p, result, error, top)
        return await serve(request, work, show, needs="prompt")

    async def steer(request):
        def work(loaded, p):
            return workbench.steer_view(loaded, p.get("dict"), p.get("feature", ""), number(p, "scale", 8.0),
                                        p["prompt"], integer(p, "tokens", 24, 1, 200))
        return await serve(request, work, pages.steer_page, needs="prompt")

    async def graph(request):
        def work(loaded, p):
            thresholds = {name: number(p, name, default) for name, default in
                          (("node_threshold", 0.8), ("edge_threshold", 0.98))}
            return workbench.graph_view(loaded, p["prompt"], p.get("target") or None, **thresholds)
        return await serve(request, work, lambda info, p, result, error, names: pages.graph_page(info, p, result, error),
                           needs="prompt")

    async def sweep(request):
        path = request.query_params.get("path", "")
        resolved = inside(path, models.roots)
        if not (resolved / "multirun.yaml").is_file():
            raise HTTPException(404, f"{clip(path)} is not a sweep (no multirun.yaml). Fix: open one listed on the "
                                     "start page.")
        _, sweeps = scan([Path(path)])
        found = next((s for s in sweeps if s.path == Path(path)), None)
        if found is None:
            raise HTTPException(404, f"{clip(path)} holds no sweep the explorer can read.")
        return HTMLResponse(pages.sweep_page(found, [overrides_of(j.path) for j in found.jobs]))

    async def compare(request):
        params = await params_of(request)   # the prompt with its newlines as typed
        a, b = params.get("a", ""), params.get("b", "")
        for path in (a, b):
            inside(path, models.roots)
            if not is_run_dir(Path(path)) or read_run(Path(path)).problem:
                raise HTTPException(404, f"{clip(path)} is not a run that can be opened. Fix: choose runs listed "
                                         "on the start page.")
        return HTMLResponse(pages.compare_page(Path(a), Path(b), params.get("prompt", "")))

    both = ["GET", "POST"]
    return [Route("/features", features, methods=both), Route("/api/features", features, methods=both),
            Route("/feature", feature, methods=both), Route("/api/feature", feature, methods=both),
            Route("/search", search, methods=both), Route("/api/search", search, methods=both),
            Route("/steer", steer, methods=both), Route("/api/steer", steer, methods=both),
            Route("/graph", graph, methods=both), Route("/sweep", sweep), Route("/compare", compare)]
