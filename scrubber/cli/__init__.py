"""The ``scrubber`` command line (Typer + Rich)."""
