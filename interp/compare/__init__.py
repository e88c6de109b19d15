"""Offline comparison of runs: `python analyze.py compare <sweep dir | run dirs...> [out=] [metrics=] [wandb=]`.

`interp.compare.report.compare` does the work; `main` is the command line.
"""

from __future__ import annotations

import sys

from interp.errors import ConfigError, exit_on_user_error

USAGE = ("python analyze.py compare <sweep dir | run dir ...> [out=<dir>] [metrics=<glob>,<glob>] "
         "[wandb=false]")
_OPTIONS = ("out", "metrics", "wandb")


def parse(argv: list[str]) -> tuple[list[str], dict]:
    paths, options = [], {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key in _OPTIONS:
            options[key] = value
        elif eq and "/" not in key:
            raise ConfigError(f"compare has no option {key!r}. Fix: use one of {', '.join(_OPTIONS)}: {USAGE}.")
        else:
            paths.append(arg)
    if not paths:
        raise ConfigError(f"compare needs a sweep directory or run directories. Fix: {USAGE}.")
    if "metrics" in options:
        options["metrics"] = tuple(p.strip() for p in options["metrics"].split(",") if p.strip())
    if "wandb" in options:
        if options["wandb"].lower() not in ("true", "false"):
            raise ConfigError(f"wandb={options['wandb']} is not true or false. Fix: wandb=false skips the W&B run.")
        options["wandb"] = options["wandb"].lower() == "true"
    return paths, options


@exit_on_user_error
def main(argv: list[str]) -> None:
    from interp.compare.report import compare

    paths, options = parse(argv)
    for task, result in compare(paths, **options).items():
        files = result["files"]
        print(f"task={task}: {len(result['table'].rows)} runs ({result['counts']})")
        if result["left_out"]:
            print(result["left_out"])
        print(result["table"].markdown())
        for kind, path in files.items():
            print(f"  {kind:<26} {path}")
    sys.stdout.flush()
