"""The explorer: a local web app over the runs under outputs/ and multirun/ (`python analyze.py serve`).

- `listing`: which runs and sweeps exist, read from their files only (never written).
- `views`: what a prompt shows for one run, computed by the analyses' own functions.
- `pages`: HTML of the start page and run pages (plotly figures, plotly.js served locally).
- `app`: the Starlette app (routes, the outputs-folders-only file guard, the security headers).
- `cli`: `serve` and `index` (a static start page).
"""
