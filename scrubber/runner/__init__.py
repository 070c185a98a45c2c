"""Batch jobs over files and folder trees."""

from __future__ import annotations

from scrubber.runner.deid_job import (
    DeidJob,
    FileOutcome,
    FileStatus,
    deidentify_file,
    iter_files,
    resolve_destination,
)

__all__ = [
    "DeidJob",
    "FileOutcome",
    "FileStatus",
    "deidentify_file",
    "iter_files",
    "resolve_destination",
]
