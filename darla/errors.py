"""User errors: one clean line on stderr and a non-zero exit, never a traceback.

A stage raises ``UserError`` (a ValueError) for anything the user can fix: a bad setting, a
missing or damaged run, a parent run that does not fit. Every stage's entry point is wrapped by
``user_facing``, which also reports the ValueError / FileNotFoundError / FloatingPointError that
the stages raise with a message meant for the user. ``DARLA_TRACEBACK=1`` shows the traceback.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable

USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
EXIT_CODE = 2


class UserError(ValueError):
    """Something the user said or gave that darla refuses, with a message that says what to change."""


def user_facing(stage: str) -> Callable:
    """Wrap a stage's Hydra task: a user error prints ``darla <stage>: error: ...`` and exits with 2;
    a SLURM job whose task finished ignores the requeue signal from then on."""

    def wrap(task: Callable) -> Callable:
        @functools.wraps(task)
        def run(*args, **kwargs):
            try:
                result = task(*args, **kwargs)
            except USER_ERRORS as err:
                if os.environ.get("DARLA_TRACEBACK", "") not in ("", "0"):
                    raise
                print(f"darla {stage}: error: {err}", file=sys.stderr, flush=True)
                sys.exit(EXIT_CODE)
            if "SLURM_JOB_ID" in os.environ:
                # The job's work is done, so SLURM's pre-timeout signal (hydra.launcher.signal_delay_s)
                # has nothing left to checkpoint; arriving while Python shuts down (which restores the
                # default action, death) it would mark a finished job FAILED in sacct.
                signal.signal(signal.SIGUSR2, signal.SIG_IGN)
            return result

        return run

    return wrap
