"""``python -m scrubber`` runs the command line."""

from scrubber.cli.app import main

main()
