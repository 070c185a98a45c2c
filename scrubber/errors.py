"""The one exception hierarchy of scrubber.

Every error raised on purpose by scrubber derives from :class:`ScrubberError`. Messages say what
failed, why, and what to do about it. They never contain header values, OCR text or other PHI: an
error about a file names the file path the caller gave us and the DICOM *tag* involved, never its
value.

Each class carries a ``reason``: a short machine-readable slug used in reports, ledgers and
quarantine folder names.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeidentificationError",
    "InputError",
    "KeyStoreError",
    "ModelIntegrityError",
    "NotDicomError",
    "OutputError",
    "ScrubberError",
    "UnreadableDicomError",
]


class ScrubberError(Exception):
    """Base class of every error scrubber raises on purpose."""

    reason: str = "error"


class ConfigError(ScrubberError):
    """A configuration or command-line choice is invalid or inconsistent."""

    reason = "config"


class ModelIntegrityError(ConfigError):
    """A shipped model file does not match the SHA-256 digest its manifest records.

    The file was damaged, replaced or edited after the manifest was written; scrubber refuses to
    run a model whose provenance it cannot vouch for.
    """

    reason = "model_integrity"


class InputError(ScrubberError):
    """An input file cannot be used."""

    reason = "input"


class NotDicomError(InputError):
    """The input is not a DICOM file (no DICM preamble and no plausible DICOM data set)."""

    reason = "not_dicom"


class UnreadableDicomError(InputError):
    """The input looks like DICOM but cannot be parsed (truncated, malformed, absurd lengths)."""

    reason = "unreadable"


class DeidentificationError(ScrubberError):
    """Metadata de-identification could not be completed for an instance."""

    reason = "deid_failed"


class KeyStoreError(ScrubberError):
    """The re-identification key store cannot be opened, read or written."""

    reason = "key_store"


class OutputError(ScrubberError):
    """An output file cannot be written."""

    reason = "output"
