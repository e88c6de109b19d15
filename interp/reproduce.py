"""`python train.py --reproduce <run dir> [hydra.run.dir=<new dir>]`: rerun a saved run and check it.

The run is recomposed from its stored overrides (run_meta in config.yaml, as Hydra would from the
command line) into a new run directory. Then the new resolved config is compared with the stored
one (conf/ may have changed since), the final metrics with the stored ones (CPU runs must agree
to 1e-6; timings are left out), and the code and package versions with those the run recorded.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import yaml

from interp.config_schema import check_config
from interp.errors import RunDirError
from interp.provenance import differences, versions
from interp.run_dir import (
    CONFIG_FILE,
    checkpoint_path,
    flat_config,
    is_done,
    read_metrics,
    require_run_dir,
)

FLAG = "--reproduce"
TOLERANCE = 1e-6
_UNTIMED = ("time/", "throughput/")   # wall-clock numbers never repeat


def split_argv(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the run after --reproduce, the other arguments) or (None, argv)."""
    if FLAG not in argv:
        return None, argv
    i = argv.index(FLAG)
    if i + 1 >= len(argv) or "=" in argv[i + 1]:
        raise RunDirError(f"{FLAG} needs a run directory. Fix: python train.py {FLAG} outputs/<date>/<time>_<name>.")
    return argv[i + 1], argv[:i] + argv[i + 2:]


def check_target(run: str | Path) -> tuple[Path, dict]:
    """The run directory and its stored config; RunDirError if it cannot be reproduced."""
    run = require_run_dir(run)
    checkpoint_path(run)   # the checkpoint holds the same config; a run without it is incomplete
    config = read_config(run)
    if not isinstance(config.get("run_meta"), dict) or "overrides" not in config["run_meta"]:
        raise RunDirError(f"{run}/{CONFIG_FILE} has no run_meta.overrides. Fix: reproduce a run written by train.py.")
    check_config(config, where=f"{run}/{CONFIG_FILE}: ")   # the values it would rerun with
    if not is_done(run):
        raise RunDirError(f"{run} did not finish (no metrics.json with status done), so there is nothing to compare. "
                          "Fix: rerun it with its overrides, or reproduce a finished run.")
    return run, config


def read_config(run: Path) -> dict:
    """The run's stored config.yaml as a mapping; RunDirError if it is not one (hand-edited, cut short)."""
    path = run / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        reason = (f"{getattr(e, 'problem', None) or type(e).__name__}"
                  + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""))
        raise RunDirError(f"{path} is not valid YAML ({reason}), so the run's overrides cannot be read. "
                          "Fix: restore that file from a copy, or reproduce another run.") from None
    if not isinstance(config, dict):
        raise RunDirError(f"{path} holds no config (a {type(config).__name__}, not a mapping). "
                          "Fix: restore that file from a copy, or reproduce another run.")
    return config


def config_differences(old: dict, new: dict) -> list[str]:
    """`key: stored -> now` for config leaves that differ, leaving out where each run and its caches are
    (values under the run's own `paths.*` are compared with those paths written as ${paths.<name>})."""
    def leaves(config: dict) -> dict:
        paths = sorted(((str(v), k) for k, v in (config.get("paths") or {}).items() if isinstance(v, str) and v),
                       key=lambda p: -len(p[0]))

        def local(value):
            if not isinstance(value, str):
                return value
            for path, name in paths:
                value = value.replace(path, f"${{paths.{name}}}")
            return value

        skip = ("paths", "run_meta", "threads")   # threads: set from run_meta by reproduce()
        return {k: local(v) for k, v in flat_config({k: v for k, v in config.items() if k not in skip}).items()}

    a, b = leaves(old), leaves(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def metric_differences(old: dict, new: dict, tol: float = TOLERANCE) -> tuple[list[str], int]:
    """(`key: stored -> now` beyond `tol`, number of metrics compared)."""
    keys = sorted(k for k in set(old) | set(new) if not k.startswith(_UNTIMED) and k not in ("status",))
    out = []
    for k in keys:
        x, y = old.get(k), new.get(k)
        numbers = all(isinstance(v, (int, float)) for v in (x, y))
        same = (numbers and (x == y or abs(x - y) <= tol or (math.isnan(x) and math.isnan(y)))) or (not numbers and x == y)
        if not same:
            out.append(f"{k}: {x} -> {y}" + (f" (diff {y - x:+.3g})" if numbers else ""))
    return out, len(keys)


def report(old_dir: Path, old_config: dict, new_dir: Path) -> tuple[str, bool]:
    new_config = yaml.safe_load((new_dir / CONFIG_FILE).read_text())
    lines, ok = [], True
    recorded = (old_config.get("run_meta") or {}).get("versions")
    if recorded is None:
        lines.append("warning: the run recorded no code or package versions (written before they were recorded)")
    elif diff := differences(recorded, versions()):
        lines.append("warning: versions differ from the run's (recorded -> now): " + "; ".join(diff))
    if diff := config_differences(old_config, new_config):
        ok = False
        lines.append("config differs from the stored one (stored -> now): " + "; ".join(diff))
    diff, n = metric_differences(read_metrics(old_dir), read_metrics(new_dir))
    if diff:
        ok = False
        lines.append(f"metrics differ beyond {TOLERANCE:g} ({len(diff)} of {n}, stored -> now): " + "; ".join(diff[:20]))
    verdict = "reproduced" if ok else "NOT reproduced"
    lines.append(f"{verdict}: {new_dir} against {old_dir} ({n} final metrics compared, tolerance {TOLERANCE:g})")
    return "\n".join(lines), ok


def reproduce(main, argv: list[str]) -> int:
    """Run `main` (train.py's Hydra entry) on the stored overrides of the run named after --reproduce;
    print the report; return the exit code (0 reproduced, 1 not)."""
    target, rest = split_argv(argv)
    old_dir, old_config = check_target(target)
    new_dir = next((a.split("=", 1)[1] for a in rest if a.startswith("hydra.run.dir=")), None)
    if new_dir is None:
        new_dir = f"outputs/reproduce/{time.strftime('%Y-%m-%d/%H-%M-%S')}_{old_dir.name}"
        rest = [*rest, f"hydra.run.dir={new_dir}"]
    meta = old_config["run_meta"]
    # The same torch thread count: CPU reductions split over another number of threads round differently.
    threads = [f"threads={meta['threads']}"] if meta.get("threads") else []
    # One run, even for a trial of a search whose preset sets hydra.mode=MULTIRUN.
    sys.argv = [rest[0], *meta["overrides"], *threads, "hydra.mode=RUN", *rest[1:]]
    print(f"reproducing {old_dir}: {' '.join(sys.argv[1:])}", flush=True)
    main()
    text, ok = report(old_dir, old_config, Path(new_dir))
    print(text, file=sys.stdout if ok else sys.stderr, flush=True)
    return 0 if ok else 1
