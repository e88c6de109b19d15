"""The explorer's screenshots in docs/ (shown in the README), one per page type, taken in Debian's Chromium
through Playwright from `analyze.py serve` as a user starts it.

    python docs/screenshots.py --run <an lm run> --dictionaries <a run of per-layer transcoders or SAEs> \
        --sweep <a sweep folder> [--feature 5] [--out docs]

The README's pictures came from: --run outputs/base_runs/<lm_mix run> --dictionaries
multirun/<lm_mix_transcoders run> --sweep multirun/<a sweep of lm_mix_transcoders, one job per layer>.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
PROMPT = "def add(a, b):\n    return a + b"
TEXT = "The licence grants you the right to copy and modify the software."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--dictionaries", required=True)
    p.add_argument("--sweep", required=True)
    p.add_argument("--dict", default=None, help="the dictionary shown (default: the run's second)")
    p.add_argument("--feature", type=int, default=None, help="the feature shown (default: the strongest)")
    p.add_argument("--out", default=str(REPO / "docs"))
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    roots = sorted({str(Path(x).parts[0]) for x in (args.run, args.dictionaries, args.sweep)})
    server = subprocess.Popen([sys.executable, str(REPO / "analyze.py"), "serve", "--port", "0",
                               *[a for r in roots for a in ("--root", r)]], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        runs = args.dictionaries
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(600_000)
            page.goto(url + "api/search?" + urlencode({"path": runs, "prompt": "a"}))
            names = page.evaluate("() => JSON.parse(document.body.innerText).labels")
            name = args.dict or names[min(1, len(names) - 1)]
            feature = args.feature
            if feature is None:
                page.goto(url + "api/features?" + urlencode({"path": runs, "dict": name, "n": 1}))
                feature = page.evaluate("() => JSON.parse(document.body.innerText).rows[0].feature")
            shots = {
                "start": "",
                "prompt": "run?" + urlencode({"path": args.run, "prompt": PROMPT, "layer": 1}),
                "features": "features?" + urlencode({"path": runs, "dict": name}),
                "feature": "feature?" + urlencode({"path": runs, "dict": name, "feature": feature}),
                "search": "search?" + urlencode({"path": runs, "prompt": TEXT}),
                "steer": "steer?" + urlencode({"path": runs, "dict": name, "feature": feature, "scale": 10,
                                               "prompt": PROMPT}),
                "graph": "graph?" + urlencode({"path": runs, "prompt": PROMPT}),
                "sweep": "sweep?" + urlencode({"path": args.sweep}),
            }
            for shot, route in shots.items():
                page.goto(url + route)
                page.wait_for_load_state("networkidle")
                out = Path(args.out) / f"explorer_{shot}.png"
                page.screenshot(path=out)
                print(f"{out}: {url}{route}")
            browser.close()
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
