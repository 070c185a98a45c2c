"""Redacting a whole instance: every frame a box names, then the pixel data written back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from scrubber.dicom_io.encode import encode_frames
from scrubber.dicom_io.overlays import find_overlays, iter_overlay_groups
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.errors import ScrubberError
from scrubber.redact.boxes import Box, black_value, paint

__all__ = [
    "RedactionError",
    "RedactionResult",
    "redact_instance",
    "remove_overlays",
    "verify_redaction",
]

ICON_IMAGE_SEQUENCE = 0x00880200


class RedactionError(ScrubberError):
    """A redaction did not take: a box is not black after writing."""

    reason = "verification_failed"


@dataclass(frozen=True)
class RedactionResult:
    """What :func:`redact_instance` changed (counts and syntaxes only, no pixel content).

    Attributes
    ----------
    frames_painted : int
        Frames at least one box touched.
    pixels_painted : int
        Pixels painted over all frames.
    transfer_syntax_before, transfer_syntax_after : str
        The syntax of the input and of the written pixel data.
    """

    frames_painted: int
    pixels_painted: int
    transfer_syntax_before: str
    transfer_syntax_after: str


def redact_instance(ds: Dataset, boxes: list[Box]) -> RedactionResult:
    """Paint ``boxes`` black on every frame they name and write the pixel data back.

    When no box touches any pixel, PixelData is left exactly as it was (same bytes, same syntax).
    Otherwise every frame is decoded, the boxes are painted in stored values, and all frames are
    re-encoded by :func:`~scrubber.dicom_io.encode.encode_frames`. Frames are decoded with unused
    high bits cleared, so overlays embedded in those bits do not survive a redaction.

    Parameters
    ----------
    ds : Dataset
        The instance, changed in place.
    boxes : list of Box
        What to black out.

    Returns
    -------
    RedactionResult
        What changed.

    Raises
    ------
    ScrubberError
        Typed errors from decoding or encoding; the data set is then left unchanged.
    """
    description = describe_pixels(ds)
    before = description.transfer_syntax
    boxes = [
        box
        for box in boxes
        if box.clipped(description.rows, description.columns) is not None
        and (box.frame is None or 0 <= box.frame < description.frames)
    ]
    if not boxes:  # nothing to paint: the pixel data is not even decoded
        return RedactionResult(0, 0, before, before)
    frames: list[np.ndarray] = []
    frames_painted = pixels_painted = 0
    black = black_value(ds, description)
    for index, decoded in enumerate(iter_frames(ds)):
        frame = np.array(decoded, copy=True)  # decoded frames may be read-only views
        painted = paint(frame, index, boxes, black)
        frames_painted += painted > 0
        pixels_painted += painted
        frames.append(frame)
    if pixels_painted == 0:
        return RedactionResult(0, 0, before, before)
    after = encode_frames(ds, frames, description)
    if ICON_IMAGE_SEQUENCE in ds:
        # The thumbnail shows the image as it was, text included (and may be encoded in a syntax
        # the data set no longer has): it goes.
        del ds[ICON_IMAGE_SEQUENCE]
    return RedactionResult(frames_painted, pixels_painted, before, str(after))


def verify_redaction(ds: Dataset, boxes: list[Box]) -> None:
    """Decode ``ds`` again and check that every box holds only the black value.

    Parameters
    ----------
    ds : Dataset
        The redacted instance (as written, or as re-read from the written file).
    boxes : list of Box
        The boxes that were painted.

    Raises
    ------
    RedactionError
        If any pixel inside a box is not black.
    """
    description = describe_pixels(ds)
    black = np.asarray(black_value(ds, description))
    for index, frame in enumerate(iter_frames(ds)):
        rows, columns = frame.shape[:2]
        for box in boxes:
            region = box.clipped(rows, columns) if box.applies_to(index) else None
            if region is not None and not np.all(frame[region] == black):
                raise RedactionError(
                    f"Frame {index} still has pixels that are not black inside a redaction box "
                    "after writing; the instance is refused."
                )


def remove_overlays(ds: Dataset) -> int:
    """Remove every overlay plane: separate ones and those embedded in PixelData's high bits.

    Separate planes (60xx,3000) go with their groups. Embedded planes also need the pixel data
    rewritten with the unused high bits cleared; the stored values themselves do not change.
    This is what the *Clean Graphics* option does to overlays.

    Parameters
    ----------
    ds : Dataset
        The instance, changed in place.

    Returns
    -------
    int
        How many overlay planes were removed.

    Raises
    ------
    ScrubberError
        Typed errors from decoding or encoding when an embedded plane needs the rewrite.
    """
    planes = find_overlays(ds)
    if any(plane.embedded for plane in planes):
        description = describe_pixels(ds)
        frames = [np.array(frame, copy=True) for frame in iter_frames(ds)]  # high bits cleared
        encode_frames(ds, frames, description)
    groups = list(iter_overlay_groups(ds))
    for group in groups:
        for tag in [t for t in list(ds.keys()) if t.group == group]:
            del ds[tag]
    return len(planes)
