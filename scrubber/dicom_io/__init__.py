"""Reading, validating and writing DICOM files (the only place that opens them)."""

from __future__ import annotations

from scrubber.dicom_io.files import looks_like_dicom, read_instance, write_instance

__all__ = ["looks_like_dicom", "read_instance", "write_instance"]
