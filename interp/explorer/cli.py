"""`python analyze.py serve` (the explorer) and `python analyze.py index` (a static start page).

    python analyze.py serve [--port 8050] [--host 127.0.0.1] [--root outputs --root multirun]
    python analyze.py index [--out index.html] [--root ...]
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path

from interp.errors import ConfigError

DEFAULT_ROOTS = ("outputs", "multirun")
LOCAL = "127.0.0.1"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="analyze.py", description="Browse runs; give a run's model prompts.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the explorer (a local web app)")
    serve.add_argument("--port", type=int, default=8050, help="0: any free port")
    serve.add_argument("--host", default=LOCAL, help=f"default {LOCAL} (this machine only); others are warned about")
    serve.add_argument("--device", default="cpu")
    serve.add_argument("--sae", metavar="FOLDER|RELEASE:ID",
                       help="a pretrained SAE (SAELens folder, e.g. <SAE run>/sae, or SAELens release:id) for every "
                            "run without one, where it fits the model")
    index = sub.add_parser("index", help="write the start page as a static HTML file")
    index.add_argument("--out", default="index.html")
    for sp in (serve, index):
        sp.add_argument("--root", action="append", help="folder with runs (repeatable; default: outputs, multirun)")
    return p


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError saying the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use. Fix: pass --port <another port>, "
                              "or --port 0 for any free one.") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}). Fix: pass --host {LOCAL}.") from None
    sock.listen(64)
    return sock


def serve(args) -> None:
    import torch

    try:
        import uvicorn

        from interp.explorer.app import create_app
    except ImportError as e:
        raise ConfigError(f"the explorer needs Starlette and uvicorn ({e}). "
                          "Fix: pip install -e . (they are dependencies of interp).") from None

    # One prompt at a time on small models: one thread answers fastest (measured 0.05 s vs 0.2-0.6 s
    # for a 17-token prompt on lm_mix with two busy cores), and leaves the other cores alone.
    torch.set_num_threads(1)

    if args.host != LOCAL:
        print(f"warning: serving on {args.host}, not only this machine: anyone who can reach it can read "
              "your runs and run their models. Use the default --host 127.0.0.1 unless you mean it.",
              file=sys.stderr, flush=True)
    sock = bind(args.host, args.port)
    roots = [Path(r) for r in args.root or DEFAULT_ROOTS]
    port = sock.getsockname()[1]
    app = create_app(roots, device=args.device, sae=sae_spec(args.sae))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"explorer: http://{host}:{port}/  (runs under {', '.join(map(str, roots))}; Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


def sae_spec(value: str | None) -> dict | None:
    """`--sae` as conf/sae/pretrained.yaml's fields: a folder, or `release:id`."""
    if not value:
        return None
    if Path(value).is_dir():
        return {"path": value}
    release, sep, sae_id = value.partition(":")
    if not sep:
        raise ConfigError(f"--sae {value} is neither a folder nor release:id. Fix: --sae <SAE run>/sae or "
                          "--sae gpt2-small-res-jb:blocks.6.hook_resid_pre.")
    return {"release": release, "id": sae_id}


def write_index(out: Path, roots: list[Path]) -> Path:
    """The start page with plain relative links to the files (no server needed)."""
    from interp.explorer.listing import scan
    from interp.explorer.pages import start_page
    from interp.files import atomic_write_text

    runs, sweeps = scan(roots)
    base = out.resolve().parent

    def file_url(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), base)).as_posix()

    atomic_write_text(out, start_page(runs, sweeps, roots, file_url, run_url=None))
    return out


def check_roots(roots: list[str] | None) -> None:
    """Every --root given must be a folder: a typo would otherwise list no runs and say nothing.
    (The default roots may be missing: a fresh checkout has no outputs/ yet.)"""
    for root in roots or []:
        if not Path(root).is_dir():
            what = "is not a folder" if Path(root).exists() else "does not exist"
            raise ConfigError(f"--root {root} {what}. Fix: pass a folder that holds runs (e.g. outputs, multirun "
                              "or a sweep folder), or leave --root out for outputs and multirun.")


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    check_roots(args.root)
    if args.command == "serve":
        serve(args)
    else:
        out = write_index(Path(args.out), [Path(r) for r in args.root or DEFAULT_ROOTS])
        print(f"wrote {out}")
