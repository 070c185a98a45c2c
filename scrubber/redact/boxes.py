"""Boxes to black out, and the stored value that displays black.

Redaction paints in the stored-value domain of the instance (DESIGN.md invariant 4), with the
value that a viewer shows as black for its photometric interpretation:

* MONOCHROME2: the smallest stored value; MONOCHROME1: the largest.
* RGB, and YBR_ICT/YBR_RCT (decoded to RGB by the JPEG 2000 decoder): 0 in every sample.
* YBR_FULL, YBR_FULL_422: Y = 0 and Cb = Cr = the middle of the range.
* PALETTE COLOR: the index of the darkest palette entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from scrubber.dicom_io.pixels import PixelDescription

__all__ = ["Box", "black_value", "paint"]


@dataclass(frozen=True)
class Box:
    """A rectangle in frame pixel coordinates, on one frame or on every frame.

    Parameters
    ----------
    x, y : int
        Top-left corner (column, row).
    width, height : int
        Size in pixels (positive).
    frame : int or None
        The 0-based frame it applies to; ``None`` for every frame.
    """

    x: int
    y: int
    width: int
    height: int
    frame: int | None = None

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError("a box needs a positive width and height")

    def applies_to(self, index: int) -> bool:
        """Whether the box paints frame ``index``."""
        return self.frame is None or self.frame == index

    def clipped(self, rows: int, columns: int) -> tuple[slice, slice] | None:
        """Return row and column slices of the box inside a frame, or ``None`` if outside."""
        top, left = max(0, self.y), max(0, self.x)
        bottom, right = min(rows, self.y + self.height), min(columns, self.x + self.width)
        if top >= bottom or left >= right:
            return None
        return slice(top, bottom), slice(left, right)


def _palette_darkest(ds: Dataset) -> int:
    from scrubber.render import apply_palette

    descriptor = ds.get("RedPaletteColorLookupTableDescriptor", [256, 0, 16])
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    indices = np.arange(first, first + entries, dtype=np.int64)
    rgb = apply_palette(indices, ds).astype(np.float64)
    luminance = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return int(indices[int(np.argmin(luminance))])


def black_value(ds: Dataset, description: PixelDescription) -> int | tuple[int, int, int]:
    """Return the stored value that displays black for this instance.

    Parameters
    ----------
    ds : Dataset
        The instance (for its palette).
    description : PixelDescription
        Its pixel description.

    Returns
    -------
    int or tuple of int
        One value for single-sample data, three for colour.
    """
    bits = description.bits_stored
    low = -(1 << (bits - 1)) if description.signed else 0
    high = (1 << (bits - 1)) - 1 if description.signed else (1 << bits) - 1
    photometric = description.photometric
    if photometric == "MONOCHROME2":
        return low
    if photometric == "MONOCHROME1":
        return high
    if photometric == "PALETTE COLOR":
        return _palette_darkest(ds)
    if photometric in ("YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420"):
        middle = 1 << (bits - 1)
        return (0, middle, middle)
    return (0, 0, 0)


def paint(
    frame: np.ndarray, index: int, boxes: list[Box], value: int | tuple[int, int, int]
) -> int:
    """Paint the boxes that apply to frame ``index`` with ``value``, in place.

    Parameters
    ----------
    frame : numpy.ndarray
        Stored values, ``(rows, columns)`` or ``(rows, columns, 3)``; must be writeable.
    index : int
        The frame's 0-based index.
    boxes : list of Box
        Boxes to paint (those for other frames are ignored).
    value : int or tuple of int
        From :func:`black_value`.

    Returns
    -------
    int
        How many pixels were painted.
    """
    painted = 0
    rows, columns = frame.shape[:2]
    for box in boxes:
        if not box.applies_to(index):
            continue
        region = box.clipped(rows, columns)
        if region is None:
            continue
        frame[region] = value
        painted += (region[0].stop - region[0].start) * (region[1].stop - region[1].start)
    return painted
