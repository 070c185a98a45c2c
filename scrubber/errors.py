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
    "converting_a_value",
    "where",
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


def where(exc: BaseException, depth: int = 4) -> str:
    """Return where ``exc`` was raised, without what it said.

    For logs of unexpected errors: an exception's message (an OCR backend's, a codec's,
    pydicom's) can quote header values or text read from the pixels, so only its type and the
    innermost frames of its traceback, as ``file:line (function)``, are safe to write.

    Parameters
    ----------
    exc : BaseException
        The exception.
    depth : int
        How many innermost frames to name.

    Returns
    -------
    str
        ``TypeName at file.py:12 (func) <- caller.py:34 (outer)``.
    """
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(exc.__traceback__)[-depth:]
    places = " <- ".join(
        f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})" for frame in reversed(frames)
    )
    return f"{type(exc).__name__} at {places}" if places else type(exc).__name__


def converting_a_value(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while pydicom converted a raw element's value.

    pydicom converts a value the first time it is used, so a value too short for its VR, a number
    out of range or a VR nobody defines raises wherever scrubber first reads it, with whatever
    exception pydicom chose. Raised there, the error is the file's (damaged), not scrubber's.

    Parameters
    ----------
    exc : BaseException
        The exception.

    Returns
    -------
    bool
        True when pydicom's raw-element conversion is on the exception's traceback.
    """
    import itertools
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(exc.__traceback__)

    def pydicom_frame(frame: traceback.FrameSummary, name: str, module: str | None = None) -> bool:
        path = Path(frame.filename)
        return (
            frame.name == name
            and path.parent.name == "pydicom"
            and (module is None or path.stem == module)
        )

    return any(pydicom_frame(frame, "convert_raw_data_element") for frame in frames) or any(
        # the converted value stored back on first read (``Dataset.__getitem__`` calls
        # ``__setitem__``), where a VR of SQ over bytes that hold no items fails
        pydicom_frame(outer, "__getitem__", "dataset")
        and pydicom_frame(inner, "__setitem__", "dataset")
        for outer, inner in itertools.pairwise(frames)
    )
