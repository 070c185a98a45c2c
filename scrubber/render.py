"""Stored pixel values to the 8-bit view that detection models and reviewers see.

One function, shared by training and inference, so both look at the same pixels:

* MONOCHROME1/2: modality LUT or rescale, then the data set's first VOI window (linear, as PS3.3
  C.11.2.1.2 defines it) or, without one, the frame's own range; MONOCHROME1 is inverted so that
  its minimum shows white.
* PALETTE COLOR: the palette (segmented ones included) applied, scaled to 8 bits.
* YBR_FULL and YBR_FULL_422: converted to RGB. YBR_ICT and YBR_RCT are already RGB once decoded
  (the JPEG 2000 decoder applies the inverse component transform).
* RGB: scaled to 8 bits when stored in more.

Greyscale frames of 8- and 16-bit integers take a lookup table: the same arithmetic applied once
to every possible stored value (65,536 at most) instead of to every pixel, and kept for the next
frame with the same rescale, window and range. Both routes give the same bytes (IEEE arithmetic is
element-wise; a test holds them equal).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from pydicom.dataset import Dataset

from scrubber.dicom_io.pixels import PixelDescription

__all__ = ["apply_palette", "render_frame"]

_PALETTE_DATA = tuple(
    f"{colour}PaletteColorLookupTableData" for colour in ("Red", "Green", "Blue", "Alpha")
)


def apply_palette(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Map palette indices to RGB(A) through the data set's palette, in either byte order.

    pydicom's ``apply_color_lut`` reads non-segmented 16-bit LUT data in the machine's byte order
    whatever the transfer syntax, so a big-endian file's palette comes out byte-swapped (a
    near-black image). Here the LUT data of a big-endian data set is swapped first.

    Parameters
    ----------
    values : numpy.ndarray
        Palette indices.
    ds : pydicom.dataset.Dataset
        The instance with its Palette Color Lookup Table module.

    Returns
    -------
    numpy.ndarray
        ``values.shape + (3,)`` (or 4 with an alpha table), in the LUT's bit depth.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels.processing import apply_color_lut
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    big_endian = syntax is not None and syntax.is_transfer_syntax and not syntax.is_little_endian
    if not big_endian or "RedPaletteColorLookupTableData" not in ds:
        return np.asarray(apply_color_lut(values, ds))
    entries = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
    lut = Dataset()  # new elements: the caller's data set is never modified
    for keyword in ds.dir("PaletteColorLookupTable"):
        element = ds[keyword]
        value = element.value
        if keyword in _PALETTE_DATA and isinstance(value, bytes) and len(value) == 2 * entries:
            value = np.frombuffer(value, ">u2").astype("<u2").tobytes()
        lut.add_new(element.tag, element.VR, value)
    lut.file_meta = FileMetaDataset()
    lut.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return np.asarray(apply_color_lut(values, lut))


def _first(value: object) -> float | None:
    """First value of a possibly multi-valued DS element, as a float (None if absent/bad)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | bytes | int | float):
        try:
            value = next(iter(value))  # type: ignore[call-overload]
        except (StopIteration, TypeError):
            return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _scale_to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) / (high - low)
    return np.asarray(np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5, dtype=np.uint8)


def _modality(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels.processing import apply_modality_lut

    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        try:
            return np.asarray(apply_modality_lut(frame, ds))
        except (ValueError, TypeError, KeyError, AttributeError):
            pass  # a broken LUT must not stop the view; stored values still show text
    return frame


def _window(ds: Dataset) -> tuple[float, float] | None:
    """Return the first VOI window as the ``(low, high)`` of PS3.3 C.11.2.1.2.1 windowing."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return None


def _to_view(
    values: np.ndarray, bounds: tuple[float, float] | None, description: PixelDescription
) -> np.ndarray:
    """Modality values to 8 bits between ``bounds`` (None: the values' own finite range)."""
    if bounds is None:
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size == 0:
            view = np.zeros(values.shape, dtype=np.uint8)
        else:
            view = _scale_to_8bit(values, float(finite.min()), float(finite.max()))
    else:
        view = _scale_to_8bit(values, *bounds)
    if description.photometric == "MONOCHROME1":
        view = 255 - view
    return view


#: Stored types rendered through a lookup table, and how many tables are kept.
_TABLE_TYPES: Final = frozenset({np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16)})
_TABLES_KEPT: Final = 32
_tables: dict[tuple[object, ...], np.ndarray] = {}


def _table_key(
    frame: np.ndarray, ds: Dataset, description: PixelDescription
) -> tuple[tuple[object, ...], tuple[float, float]] | None:
    """Return what a lookup table for ``frame`` depends on and its 8-bit bounds (None: direct).

    Not for modality LUT sequences (not monotonic: the range of a frame without a window cannot
    be read off its extremes) nor for non-finite rescale values.
    """
    if frame.dtype not in _TABLE_TYPES or frame.size == 0 or "ModalityLUTSequence" in ds:
        return None
    try:
        rescale = (repr(ds.get("RescaleSlope")), repr(ds.get("RescaleIntercept")))
    except Exception:  # a damaged value: the direct route meets it as it always has
        return None
    bounds = _window(ds)
    if bounds is None:
        # the frame's own range: a rescale is monotonic, so its extremes map to the range's
        extremes = _modality(np.array([frame.min(), frame.max()], dtype=frame.dtype), ds)
        if extremes.dtype.kind == "f" and not np.all(np.isfinite(extremes)):
            return None
        bounds = (float(extremes.min()), float(extremes.max()))
    return (frame.dtype.str, description.photometric, rescale, bounds), bounds


def _greyscale(frame: np.ndarray, ds: Dataset, description: PixelDescription) -> np.ndarray:
    found = _table_key(frame, ds, description)
    if found is None:
        return _to_view(_modality(frame, ds), _window(ds), description)
    key, bounds = found
    unsigned = np.dtype(f"u{frame.dtype.itemsize}")
    table = _tables.get(key)
    if table is None:
        every = np.arange(2 ** (8 * frame.dtype.itemsize), dtype=unsigned).view(frame.dtype)
        table = _to_view(_modality(every, ds), bounds, description)
        if len(_tables) >= _TABLES_KEPT:
            _tables.clear()
        _tables[key] = table
    return np.take(table, frame.view(unsigned))  # same as table[...], faster


def _colour_depth(frame: np.ndarray, description: PixelDescription) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    top = float(2**description.bits_stored - 1)
    return _scale_to_8bit(frame, 0.0, top)


def render_frame(frame: np.ndarray, ds: Dataset, description: PixelDescription) -> np.ndarray:
    """Render one frame of stored values as 8-bit greyscale or RGB.

    Parameters
    ----------
    frame : numpy.ndarray
        A frame from :func:`~scrubber.dicom_io.pixels.iter_frames`.
    ds : Dataset
        The instance (for LUTs, windows and palettes).
    description : PixelDescription
        Its pixel description.

    Returns
    -------
    numpy.ndarray
        ``uint8``; ``(rows, columns)`` for greyscale, ``(rows, columns, 3)`` RGB for colour.
    """
    photometric = description.photometric
    if photometric.startswith("MONOCHROME"):
        return _greyscale(frame, ds, description)
    if photometric == "PALETTE COLOR":
        rgb = apply_palette(frame, ds)
        if rgb.dtype != np.uint8:
            rgb = _scale_to_8bit(rgb, 0.0, float(np.iinfo(rgb.dtype).max))
        return np.asarray(rgb, dtype=np.uint8)
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        from pydicom.pixels.processing import convert_color_space

        rgb = convert_color_space(_colour_depth(frame, description), photometric, "RGB")
        return np.asarray(rgb, dtype=np.uint8)
    return _colour_depth(frame, description)
