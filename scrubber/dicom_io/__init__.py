"""Reading, validating and writing DICOM files (the only place that opens them)."""

from __future__ import annotations

from scrubber.dicom_io.files import (
    commit_instance,
    flush_file,
    looks_like_dicom,
    read_instance,
    stage_instance,
    write_instance,
)

__all__ = [
    "commit_instance",
    "flush_file",
    "looks_like_dicom",
    "read_instance",
    "stage_instance",
    "write_instance",
]
