"""How fast the explorer's feature workbench answers, through its HTTP routes (pages rendered), on a run of
several dictionaries:

- the first view of a dictionary (its statistics built from the validation data, then cached in the run),
- a feature page from a warm run (a feature not viewed before; then the same page again, from its cache),
- search by text: a 64-token text across every dictionary of the run,
- steering (24 new tokens, with and without), and, as the baseline measured in the same run, the run page's
  prompt views of the same text (attention, PCA, top-k: what the explorer answered before the workbench).

    python benchmarks/explorer_speed.py --run multirun/q21/skip_x16_all [--features 10]

The caches are built in a scratch folder of the run (removed at the end), so the run's own cache is neither
used nor touched. Threads: 1, as `analyze.py serve` sets (the workbench raises it for its batch work).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch


def timed(client, url: str, params: dict) -> float:
    start = time.perf_counter()
    r = client.get(url, params=params)
    seconds = time.perf_counter() - start
    if r.status_code != 200:
        raise SystemExit(f"{url} {params} answered {r.status_code}: {r.text[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run with dictionaries (an SAE or transcoder run)")
    parser.add_argument("--features", type=int, default=10, help="feature pages to time")
    args = parser.parse_args()
    torch.set_num_threads(1)   # as `analyze.py serve` does; the workbench's heavy work takes every core itself

    from starlette.testclient import TestClient

    from interp.explorer import workbench
    from interp.explorer.app import create_app
    from interp.explorer.listing import base_run_of

    run = Path(args.run)
    scratch = f"explorer-bench-{int(time.time())}"
    workbench.CACHE_DIR = scratch   # a cache of its own: the first view really builds
    try:
        base = base_run_of(run)   # an SAE run's base run must be served too
        client = TestClient(create_app([run.parent, *([base.parent] if base else [])]))
        start = time.perf_counter()
        listing = client.get("/api/features", params={"path": str(run)}).json()
        first = time.perf_counter() - start
        names = client.get("/api/search", params={"path": str(run), "prompt": "a"}).json()["labels"]
        print(f"run {run}: {len(names)} dictionaries of {listing['d_sae']} features; statistics over "
              f"{listing['n_tokens']:,} validation tokens")
        print(f"first view (model load + statistics of one dictionary + list): {first:.2f} s "
              f"(of which the statistics pass {listing['build_s']:.2f} s)")
        name = names[-1]
        build = timed(client, "/features", {"path": str(run), "dict": name})
        print(f"first view of another dictionary ({name}): {build:.2f} s")
        alive = [r["feature"] for r in client.get("/api/features", params={"path": str(run), "dict": name,
                                                                           "n": 10_000}).json()["rows"]
                 if r["max"] > 0][:args.features]
        cold = [timed(client, "/feature", {"path": str(run), "dict": name, "feature": f}) for f in alive]
        warm = [timed(client, "/feature", {"path": str(run), "dict": name, "feature": f}) for f in alive]
        text = ("def add(a, b):\n    return a + b\n\nThe licence grants you the right to copy, modify and "
                "distribute the software, provided that")
        pieces = client.get("/api/search", params={"path": str(run), "prompt": text * 4}).json()["tokens"]
        text = "".join(pieces[1:64])   # 63 tokens after the leading [eot]: 64 in all
        tokens = len(client.get("/api/search", params={"path": str(run), "prompt": text}).json()["tokens"])
        search = [timed(client, "/search", {"path": str(run), "prompt": text}) for _ in range(10)]
        steer = [timed(client, "/steer", {"path": str(run), "dict": name, "feature": alive[0], "prompt": text,
                                          "tokens": 24}) for _ in range(3)]
        base = [timed(client, "/run", {"path": str(run), "prompt": text}) for _ in range(5)]
    finally:
        shutil.rmtree(run / scratch, ignore_errors=True)
    med = statistics.median
    b = med(base)
    print(f"feature page, warm run, first view of the feature (median of {len(cold)}): {med(cold):.3f} s "
          f"(max {max(cold):.3f}); target <= 1 s; {med(cold) / b:.2f}x the run page")
    print(f"feature page again (its cached page): {med(warm):.3f} s; {med(warm) / b:.2f}x the run page")
    print(f"search by text, {tokens} tokens x {len(names)} dictionaries (median of 10): {med(search):.3f} s; "
          f"target <= 1 s; {med(search) / b:.2f}x the run page")
    print(f"steering, 24 new tokens with and without, plus ablation (median of 3): {med(steer):.3f} s; "
          f"{med(steer) / b:.2f}x the run page")
    print(f"baseline: the run page's prompt views of the same text (median of 5): {b:.3f} s")


if __name__ == "__main__":
    main()
