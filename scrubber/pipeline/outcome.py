"""What happened to one instance: outcome, quarantine reason, and PHI-free figures."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

__all__ = ["InstanceResult", "Outcome", "QuarantineReason"]


class Outcome(enum.StrEnum):
    """Where an instance ends up."""

    #: No frame needed redaction: PixelData is written back untouched, only metadata changes.
    CLEAN = "clean"
    #: Text was blacked out in stored values, and a second OCR pass found none left.
    SCRUBBED = "scrubbed"
    #: Not released: a person has to look (see :class:`QuarantineReason`).
    QUARANTINED = "quarantined"


class QuarantineReason(enum.StrEnum):
    """Why an instance was quarantined (machine-readable, stable, safe for logs)."""

    #: The file cannot be parsed as DICOM.
    UNREADABLE = "unreadable"
    #: The pixel data cannot be decoded with the installed codecs.
    UNDECODABLE = "undecodable"
    #: The pixel description does not add up, or the pixels cannot be written back.
    UNSUPPORTED_ENCODING = "unsupported_encoding"
    #: Not an image scrubber can vouch for: encapsulated PDF/CDA, video, waveform-only, DICOMDIR.
    UNSUPPORTED_OBJECT = "unsupported_object"
    #: The classifier is sure a frame carries text, but OCR found none in it.
    UNCERTAIN_SCORE = "uncertain_score"
    #: After redaction, text (or a header value) is still legible, or a box is not black.
    VERIFICATION_FAILED = "verification_failed"
    #: An unexpected error; the instance is held back rather than released.
    INTERNAL_ERROR = "internal_error"
    #: Processing it ended the worker process twice (a decoder crash, memory exhausted).
    WORKER_CRASHED = "worker_crashed"


@dataclass
class InstanceResult:
    """The result of :func:`scrubber.pipeline.scrub_instance` for one instance.

    Nothing here is PHI except ``dataset`` (the de-identified output): counts, scores, reason slugs
    and box geometry only, so the rest can go into logs, ledgers and reports.

    Attributes
    ----------
    outcome : Outcome
        Clean, scrubbed or quarantined.
    reason : QuarantineReason or None
        Why it was quarantined.
    message : str or None
        A human explanation of the quarantine (no header values, no OCR text).
    dataset : Dataset or None
        The de-identified instance to write (``None`` when quarantined).
    frames : int
        Number of frames.
    scores : list of float
        The classifier's score per frame.
    flags : tuple of str
        Header flags that forced OCR.
    ocr_frames : int
        Frames OCR read (before verification).
    reread_frames : int
        Of those, frames read a second time enlarged because the first read found too little
        (:class:`scrubber.detect.ocr.Reread`).
    regions : int
        Text regions OCR found.
    redacted_regions : int
        Regions the decision blacked out.
    decisions : dict of str to int
        Decision reasons and how often each occurred.
    boxes : list of tuple
        ``(frame, x, y, width, height)`` of each painted box (``frame`` is ``-1`` for every frame);
        for an instance quarantined after the decision, the boxes proposed before verification.
    overlays_removed : int
        Overlay planes removed.
    pixels_changed : bool
        Whether PixelData was rewritten.
    seconds : dict of str to float
        Wall time per stage.
    """

    outcome: Outcome
    reason: QuarantineReason | None = None
    message: str | None = None
    dataset: Dataset | None = field(default=None, repr=False)
    frames: int = 0
    scores: list[float] = field(default_factory=list)
    flags: tuple[str, ...] = ()
    ocr_frames: int = 0
    reread_frames: int = 0
    regions: int = 0
    redacted_regions: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    overlays_removed: int = 0
    pixels_changed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def released(self) -> bool:
        """Whether the instance may be written to the output."""
        return self.outcome is not Outcome.QUARANTINED
