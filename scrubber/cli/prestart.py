"""Start ``scrubber run``'s worker-process server before the command line's own imports.

A local run's workers are separate processes (one model copy and one inference thread each).
Started the plain way (``spawn``), every worker is a fresh interpreter that imports pydicom,
NumPy, OpenCV and ONNX Runtime again, about half a second of CPU each, and only after the driver
has done the same imports: on a two-core machine that is a tenth of a 2,000-slice run.

Instead, the ``scrubber`` command (:func:`scrubber.cli.main`) starts a *fork server* first
thing, before it imports anything heavy: a fresh single-threaded process that imports what
workers need once, while the driver does its own imports on the other core. Workers are then
forked from it, ready in milliseconds. Nothing of the driver's state (its ledger connection, its
threads, its secrets in memory beyond what the settings carry) is in the server: it was started
before the driver had any. Workers still load their models themselves, after the fork.

The server lives as long as the command and ends with it. Runs started any other way (the
library, the tests' in-process runner, ``scrubber serve``) keep ``spawn``: a long-lived process
may change its environment between runs, which a server started earlier would not see.

This module imports only the standard library: it runs before everything else.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from itertools import pairwise
from multiprocessing import forkserver
from typing import Final, Literal

__all__ = ["WORKER_MODULES", "start_method", "start_worker_server"]

#: What a worker imports to process inputs, imported once in the fork server.
WORKER_MODULES: Final = ("scrubber.runner.batch",)

_started = False


def _wants_workers(argv: Sequence[str]) -> bool:
    """Whether a command line is a ``scrubber run`` that may start local worker processes.

    A cheap look at the arguments, not a parse: a run whose workers turn out not to be needed
    (one worker, nothing to do) only leaves the server idle.
    """
    if list(argv[:1]) != ["run"]:
        return False
    rest = list(argv[1:])
    if "--help" in rest or "--engine=ray" in rest:
        return False
    return not any(a == "--engine" and b == "ray" for a, b in pairwise(rest))


def start_worker_server(argv: Sequence[str] | None = None) -> bool:
    """Start the fork server for a ``scrubber run`` command line; return whether it started.

    Parameters
    ----------
    argv : sequence of str, optional
        The command's arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    bool
        ``True`` if the server runs (started now or earlier); ``False`` for any other command,
        a Ray run, or a platform without fork servers (the run then starts its workers with
        ``spawn``, as it would anyway).
    """
    global _started  # noqa: PLW0603 - one server per command, started once
    if _started:
        return True
    if not _wants_workers(sys.argv[1:] if argv is None else argv):
        return False
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    try:
        multiprocessing.set_forkserver_preload(list(WORKER_MODULES))
        forkserver.ensure_running()
    except OSError:  # no processes or pipes to spare: the run spawns its workers as usual
        return False
    _started = True
    return True


def start_method() -> Literal["spawn", "forkserver"]:
    """Return how this process should start run workers: ``forkserver`` once it is running."""
    return "forkserver" if _started else "spawn"
