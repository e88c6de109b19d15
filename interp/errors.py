"""User-facing errors: each says what was wrong and how to fix it.

`train.py` and `analyze.py` catch `InterpError`, print its message without a
traceback and exit non-zero, so a typo in an override never looks like a bug.
"""


class InterpError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class ConfigError(InterpError):
    """The composed config is invalid or self-contradictory."""


class DataError(InterpError):
    """A dataset or tokenizer could not be loaded or is invalid."""


class RunDirError(InterpError):
    """A path that should be a run directory (or checkpoint) is not one."""


class TrainingDiverged(InterpError):
    """The loss became NaN or infinite."""


class NotApplicable(InterpError):
    """An analysis does not apply to this model or run (e.g. attention on an LSTM).

    Not a failure: `interp.analyses.runner.run_analysis` prints `skipped <analysis>: <reason>`
    and the other analyses go on.
    """


def exit_on_user_error(fn):
    """Decorate an entry point: an InterpError prints `error: <message>` and exits 2, no traceback."""
    import functools
    import sys

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InterpError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


class Interrupted(InterpError):
    """The run was stopped by SIGTERM (a scheduler's pre-emption or time limit, `kill`) or Ctrl-C."""


class DiskFull(InterpError):
    """A write ran out of space (or hit a quota or file-size limit); what was written before is intact."""
