"""A reviewer's release of a held instance: their boxes painted, read again, header de-identified.

The reviewer's boxes are the decision: unlike :func:`~scrubber.pipeline.scrub_instance`, nothing
is added to them. The frames are still read again after painting, and text the policy would black
out that is left visible outside the boxes stops the release (:class:`ResidualTextError`, with the
regions' geometry so the reviewer can add boxes) unless the reviewer accepts it explicitly.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from scrubber.deid import Deidentifier
from scrubber.deid.terms import capture_terms
from scrubber.detect.decide import Policy, decide, header_match, is_lone_mark
from scrubber.detect.ocr import OcrEngine, Reread
from scrubber.dicom_io.pixels import describe_pixels
from scrubber.errors import ScrubberError
from scrubber.pipeline.instance import _WHOLLY_INSIDE, _inside_share, _read_frames
from scrubber.pipeline.outcome import InstanceResult, Outcome
from scrubber.redact import Box, redact_instance, remove_overlays, verify_redaction

__all__ = ["ResidualTextError", "release_instance"]


class ResidualTextError(ScrubberError):
    """Text the policy blacks out is still legible outside the reviewer's boxes.

    Attributes
    ----------
    regions : list of tuple
        ``(frame, x, y, width, height)`` of each residual region (geometry only, no text).
    """

    reason = "residual_text"

    def __init__(self, regions: list[tuple[int, int, int, int, int]]) -> None:
        self.regions = regions
        super().__init__(
            f"{len(regions)} text region(s) are still legible outside the boxes; add boxes over "
            "them, or accept them explicitly if they identify nobody."
        )


def release_instance(
    ds: Dataset,
    boxes: list[Box],
    *,
    engine: OcrEngine,
    deidentifier: Deidentifier,
    policy: Policy = Policy.ALL,
    accept_residual: bool = False,
    reread: Reread | None = None,
) -> InstanceResult:
    """Paint a reviewer's boxes, check the result by OCR, and de-identify the header.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The held original (changed in place).
    boxes : list of Box
        The reviewer's final boxes (may be empty: nothing to black out).
    engine : OcrEngine
        The OCR engine for the check.
    deidentifier : Deidentifier
        The project's de-identifier.
    policy : Policy, optional
        Which residual text counts (as in :func:`~scrubber.detect.decide.decide`).
    accept_residual : bool, optional
        Release even though text is still legible outside the boxes.
    reread : Reread, optional
        Read every frame in which the check finds nothing again, enlarged (default: each frame
        is read once, at its own size).

    Returns
    -------
    InstanceResult
        ``scrubbed`` (boxes painted) or ``clean``, with ``dataset`` set.

    Raises
    ------
    ResidualTextError
        When text is left and ``accept_residual`` is false (``ds`` is then partly changed:
        read the original again before another try).
    ScrubberError
        When the pixels cannot be decoded, painted or encoded.
    """
    terms = sorted(capture_terms(ds).terms())
    result = InstanceResult(outcome=Outcome.CLEAN)
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    result.overlays_removed = remove_overlays(ds)
    if has_pixels:
        description = describe_pixels(ds)
        result.frames = description.frames
        if boxes:
            redaction = redact_instance(ds, boxes)
            verify_redaction(ds, boxes)
            result.pixels_changed = redaction.pixels_painted > 0
        found, _ = _read_frames(ds, list(range(description.frames)), engine, reread)
        result.ocr_frames = description.frames
        residual = []
        for index, regions in found.items():
            for region in regions:
                inside = sum(_inside_share(region, box, index) for box in boxes)
                if inside >= _WHOLLY_INSIDE or is_lone_mark(region):
                    continue
                if (
                    policy is Policy.ALL
                    or (terms and header_match(region.text, terms))
                    or decide([region], policy, terms=terms)[0].redact
                ):
                    residual.append((index, region.x, region.y, region.width, region.height))
        if residual and not accept_residual:
            raise ResidualTextError(residual)
        result.regions = len(residual)
    result.boxes = [
        (-1 if b.frame is None else b.frame, b.x, b.y, b.width, b.height) for b in boxes
    ]
    deidentifier.deidentify(ds, pixels_cleaned=result.pixels_changed)
    if result.pixels_changed and not result.regions:
        ds.BurnedInAnnotation = "NO"
    result.dataset = ds
    result.outcome = Outcome.SCRUBBED if result.pixels_changed else Outcome.CLEAN
    return result
