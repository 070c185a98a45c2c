"""The ``scrubber`` command line (Typer + Rich)."""

from __future__ import annotations

from scrubber.cli.prestart import start_worker_server

__all__ = ["main"]


def main() -> None:
    """Run the ``scrubber`` command (the console script and ``python -m scrubber``).

    A ``scrubber run`` first starts its worker-process server
    (:mod:`scrubber.cli.prestart`), so that it imports what workers need while this process
    imports the command line.
    """
    start_worker_server()
    from scrubber.cli.app import main as run_app

    run_app()
