"""Overlay planes: separate ones (60xx,3000) and ones embedded in unused high bits of PixelData.

Text drawn in an overlay is text in the image (DESIGN.md invariant 6). This module finds overlay
planes, renders them as masks the detection stage can read, and says which bits of the stored
pixel values an embedded overlay occupies, so that cleaning can clear them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["OverlayPlane", "find_overlays", "iter_overlay_groups", "overlay_mask"]


@dataclass(frozen=True)
class OverlayPlane:
    """One overlay plane of an instance.

    Attributes
    ----------
    group : int
        The repeating group (0x6000 to 0x601E).
    embedded : bool
        ``True`` when the plane lives in bit ``bit_position`` of PixelData (no 60xx,3000).
    bit_position : int
        Overlay Bit Position (0 for separate planes).
    rows, columns : int
        Plane size.
    origin : tuple of int
        Overlay Origin (row, column), 1-based as DICOM defines it.
    frames : int
        Number of Frames in Overlay (1 unless multi-frame).
    """

    group: int
    embedded: bool
    bit_position: int
    rows: int
    columns: int
    origin: tuple[int, int]
    frames: int


def find_overlays(ds: Dataset) -> list[OverlayPlane]:
    """Return the overlay planes of ``ds``, separate and embedded.

    Parameters
    ----------
    ds : Dataset
        The instance.

    Returns
    -------
    list of OverlayPlane
        Planes in group order. A group without Overlay Data counts as embedded only when the
        pixel samples have unused high bits and its bit position is one of them.
    """
    planes: list[OverlayPlane] = []
    if next(iter_overlay_groups(ds), None) is None:  # most images: no 60xx group at all
        return planes
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x0010) not in ds:  # Overlay Rows
            continue

        def value(element: int, default: object, group: int = group) -> object:
            try:
                elem = ds.get(group << 16 | element)
            except Exception:  # a value pydicom cannot convert: unreadable, not absent
                return None
            return default if elem is None or elem.value in (None, "") else elem.value

        # A damaged description is read as far as it goes: the planes are removed whatever
        # they say, so only whether one is embedded must never be underestimated.
        rows, columns = _as_int(value(0x0010, 0)) or 0, _as_int(value(0x0011, 0)) or 0
        origin = value(0x0050, [1, 1])
        pair = [_as_int(v) for v in origin] if isinstance(origin, list | tuple) else []
        first, second = [*pair, None, None][:2]
        origin_pair = (first, second) if first is not None and second is not None else (1, 1)
        bit_position = _as_int(value(0x0102, 0))
        if bit_position is None:  # unreadable: assume the lowest unused bit (all are cleared)
            bit_position = stored if stored < allocated else -1
        embedded = (group << 16 | 0x3000) not in ds
        if embedded and not stored <= bit_position < allocated:
            continue  # neither separate data nor a usable embedded bit: nothing drawn
        planes.append(
            OverlayPlane(
                group=group,
                embedded=embedded,
                bit_position=bit_position if embedded else 0,
                rows=rows,
                columns=columns,
                origin=origin_pair,
                frames=_as_int(value(0x0015, 1)) or 1,
            )
        )
    return planes


def _as_int(value: object) -> int | None:
    """Read an overlay attribute's number (the first of several); None if unreadable."""
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def overlay_mask(
    ds: Dataset, plane: OverlayPlane, frame: np.ndarray | None = None, index: int = 0
) -> np.ndarray:
    """Return an overlay plane as a boolean mask in image coordinates.

    Parameters
    ----------
    ds : Dataset
        The instance.
    plane : OverlayPlane
        From :func:`find_overlays`.
    frame : numpy.ndarray, optional
        For embedded planes: the frame's stored values decoded *without* clearing unused bits.
    index : int, optional
        Frame index, for multi-frame separate overlays.

    Returns
    -------
    numpy.ndarray
        ``bool`` array ``(rows, columns)`` of the image, ``True`` where the overlay draws.
    """
    image_rows, image_columns = int(ds.Rows), int(ds.Columns)
    mask = np.zeros((image_rows, image_columns), dtype=bool)
    if plane.embedded:
        if frame is None:
            raise ValueError("an embedded overlay needs the frame's raw stored values")
        bits = (frame.astype(np.int64) >> plane.bit_position) & 1
        return np.asarray(bits.astype(bool))
    from pydicom.pixels.utils import unpack_bits

    data = ds[plane.group << 16 | 0x3000].value
    per_frame = plane.rows * plane.columns
    if not data or per_frame <= 0:
        return mask  # an empty plane draws nothing
    unpacked = np.asarray(unpack_bits(data))[index * per_frame : (index + 1) * per_frame]
    if unpacked.size < per_frame:
        return mask
    drawn = unpacked.reshape(plane.rows, plane.columns).astype(bool)
    top, left = plane.origin[0] - 1, plane.origin[1] - 1
    rows = slice(max(0, top), min(image_rows, top + plane.rows))
    columns = slice(max(0, left), min(image_columns, left + plane.columns))
    mask[rows, columns] = drawn[
        rows.start - top : rows.stop - top, columns.start - left : columns.stop - left
    ]
    return mask


def iter_overlay_groups(ds: Dataset) -> Iterator[int]:
    """Yield the 60xx groups present in ``ds`` (planes or leftovers)."""
    seen = set()
    for tag in ds.keys():
        # ``>>`` is int's own (C) operator and gives a plain int; BaseTag's comparisons and
        # ``.group`` are Python code, called for every element of every instance
        group = tag >> 16
        if 0x6000 <= group <= 0x601E and group % 2 == 0 and group not in seen:
            seen.add(group)
            yield group
