"""The ``scrubber`` command starts ``scrubber run``'s worker server before its own imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scrubber.cli.prestart import WORKER_MODULES, _wants_workers


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["run", "in", "--out", "out", "-p", "P"], True),
        (["run", "in", "--engine", "local"], True),
        (["run", "in", "--engine", "ray"], False),
        (["run", "in", "--engine=ray"], False),
        (["run", "--help"], False),
        (["deid", "in", "out"], False),
        (["review", "list", "run"], False),
        ([], False),
    ],
)
def test_only_a_local_run_starts_the_server(argv: list[str], wanted: bool) -> None:
    assert _wants_workers(argv) is wanted


_PROBE = """
import sys
from multiprocessing import forkserver
from scrubber.cli import prestart
started = prestart.start_worker_server({argv!r})
heavy = sorted(m for m in ("pydicom", "numpy", "onnxruntime", "cv2") if m in sys.modules)
print(started, prestart.start_method(), forkserver._forkserver._forkserver_pid is not None, heavy)
"""


def _probe(argv: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_run_starts_the_server_without_importing_anything_heavy_itself() -> None:
    # The driver's own imports then overlap the server's; a heavy import here would serialise
    # them again.
    assert _probe(["run", "in", "--out", "out"]) == "True forkserver True []"


def test_other_commands_start_nothing_and_runs_spawn() -> None:
    assert _probe(["deid", "in", "out"]) == "False spawn False []"


def test_the_server_preloads_the_modules_workers_run() -> None:
    # Worker functions moved to a module the server does not import would be imported again
    # in every worker: correct, but the saving is gone.
    from scrubber.runner import batch

    assert batch._init_worker.__module__ in WORKER_MODULES
    assert batch.process.__module__ in WORKER_MODULES
