"""Kill a process while it rewrites a checkpoint, at random moments, and count the checkpoints that survive.

    python scripts/checkpoint_kill_trials.py [--trials 20] [--mb 64] [--out /tmp/kill-trials]

A forked writer process saves a checkpoint of `--mb` MB over and over through a Lightning CheckpointIO
(Lightning's own `TorchCheckpointIO`, or interp's `AtomicCheckpointIO`), printing each step once the
save returned. After its first save the parent SIGKILLs it at a random moment and checks that the file
still loads and holds a step that was saved whole. Each IO is tried with `$TMPDIR` on the run
directory's filesystem and on another one (/dev/shm, a tmpfs), where Lightning's fsspec save copies
across filesystems. tests/test_checkpoint_safety.py runs the same trial on AtomicCheckpointIO.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

IOS = {"lightning": "pytorch_lightning.plugins.io:TorchCheckpointIO",
       "interp": "interp.callbacks.checkpoint_io:AtomicCheckpointIO"}

def writer(io: str, path: Path, mb: int, tmpdir: str, steps) -> None:
    """Save a checkpoint of `mb` MB over and over; send each step once its save returned."""
    import tempfile

    import numpy as np
    import torch

    os.environ["TMPDIR"] = tempfile.tempdir = tmpdir   # where Lightning's fsspec save puts its temporary file
    module, name = IOS[io].split(":")
    checkpoint_io = getattr(importlib.import_module(module), name)()
    weights = np.empty(mb * 2**18, dtype=np.float32)   # numpy fills it: no OpenMP threads in a forked child
    for step in range(10**9):
        weights.fill(step)
        checkpoint_io.save_checkpoint({"step": step, "weights": torch.from_numpy(weights)}, path)
        steps.send(step)


def check(path: Path, last_saved: int) -> tuple[bool, str]:
    """Whether `path` loads, is internally consistent and holds a step at least as new as `last_saved`."""
    import torch

    if not path.is_file():
        return False, "missing"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        return False, f"unloadable ({type(e).__name__}, {path.stat().st_size} bytes)"
    step = ckpt["step"]
    if not bool((ckpt["weights"] == step).all()) or step < last_saved:
        return False, f"inconsistent (step {step}, last saved {last_saved})"
    return True, f"step {step}"


def start_writer(io: str, path: Path, tmpdir: str, mb: int):
    """A forked writer (no interpreter start-up per trial) and the pipe end that receives its steps."""
    importlib.import_module(IOS[io].split(":")[0])   # imported once here, inherited by every fork
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    proc = context.Process(target=writer, args=(io, path, mb, tmpdir, send), daemon=True)
    proc.start()
    send.close()
    return proc, receive


def stop_writer(proc, steps, last: int) -> int:
    """SIGKILL the writer; return the last step it reported saved."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    while steps.poll():
        try:
            last = steps.recv()
        except EOFError:
            break
    return last


def trial(io: str, path: Path, tmpdir: str, mb: int, rng: random.Random, max_delay: float) -> tuple[bool, str]:
    """One kill: start a writer, wait for its first complete save, kill it at a random moment after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    proc, steps = start_writer(io, path, tmpdir, mb)
    first = steps.recv()   # the first save is whole
    time.sleep(rng.uniform(0, max_delay))
    return check(path, stop_writer(proc, steps, first))


def save_seconds(io: str, path: Path, tmpdir: str, mb: int) -> float:
    """How long one save takes (the kills are spread over about three saves)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc, steps = start_writer(io, path, tmpdir, mb)
    steps.recv()
    start = time.perf_counter()
    for _ in range(3):
        last = steps.recv()
    seconds = (time.perf_counter() - start) / 3
    stop_writer(proc, steps, last)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--mb", type=int, default=64)
    p.add_argument("--out", default="kill-trials", help="the run directory's stand-in (on the disk to test)")
    p.add_argument("--other-fs", default="/dev/shm", help="a folder on another filesystem, for $TMPDIR")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    same_tmp = out / "tmp"
    same_tmp.mkdir(exist_ok=True)
    other = os.stat(args.other_fs).st_dev != os.stat(out).st_dev
    print(f"checkpoint {args.mb} MB in {out}; other filesystem: {args.other_fs} ({'differs' if other else 'SAME'})")
    print("| CheckpointIO | $TMPDIR | one save (s) | killed | survived | lost |")
    print("|---|---|---|---|---|---|")
    rng = random.Random(args.seed)
    for io in IOS:
        for where, tmpdir in (("same filesystem", str(same_tmp)), (f"other ({args.other_fs})", args.other_fs)):
            path = out / io / "last.ckpt"
            seconds = save_seconds(io, path, tmpdir, args.mb)
            results = [trial(io, path, tmpdir, args.mb, rng, 3 * seconds) for _ in range(args.trials)]
            lost = [why for ok, why in results if not ok]
            print(f"| {io} | {where} | {seconds:.3f} | {len(results)} | {len(results) - len(lost)} | "
                  f"{len(lost)}{': ' + ', '.join(sorted(set(lost))) if lost else ''} |", flush=True)


if __name__ == "__main__":
    main()
