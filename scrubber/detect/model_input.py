"""The classifier's input: a rendered frame reduced to a fixed-size, multi-channel tensor.

Burned-in text is small: 7-12 pixel glyphs in an 800-pixel-wide ultrasound banner, 15 pixel
labels on a 2,500-pixel scanned film. Plain downsampling to the model's input size averages such
text into a faint smudge. So the input keeps, for every output cell, not only the mean of the
pixels it covers but also their maximum and minimum (bright text on dark ground survives in the
maximum, dark text on bright ground in the minimum) and the maximum colour saturation (coloured
text on a grey image). Text then stays visible as a dense band of cells whose extremes differ from
their mean, whatever the frame size.

Each output cell covers ``ceil(rows / size)`` by ``ceil(columns / size)`` source pixels (rows
and columns repeated, never averaged, to make the frame an exact multiple), so the extremes are
exact. The same function prepares training frames (``training/``) and frames at inference time,
so both look at the same numbers.
"""

from __future__ import annotations

from typing import Final

import numpy as np

__all__ = ["CHANNELS", "INPUT_SIZE", "model_input", "model_inputs", "scale_inputs"]

#: Side of the square model input, in cells.
INPUT_SIZE: Final = 256

#: Channel order of the model input.
CHANNELS: Final = ("mean_luma", "max_luma", "min_luma", "max_chroma")


def _luma_chroma(view: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    if view.ndim == 2:
        return view, None
    if view.ndim == 3 and view.shape[2] == 3:
        luma = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)
        red, green, blue = cv2.split(view)
        high = cv2.max(cv2.max(red, green), blue)
        low = cv2.min(cv2.min(red, green), blue)
        return luma, cv2.subtract(high, low)
    raise ValueError(
        f"model_input expects a rendered frame of shape (rows, columns) or (rows, columns, 3); "
        f"got shape {view.shape}"
    )


def _exact_multiple(plane: np.ndarray, size: int) -> tuple[np.ndarray, int, int]:
    """Bring ``plane`` to exactly ``size * ky`` by ``size * kx`` pixels; return it, ky, kx.

    Rows and columns are repeated (nearest neighbour), never averaged, so every source pixel
    lands whole in one cell and a one-pixel stroke keeps its full value in the cell's maximum or
    minimum.
    """
    import cv2

    rows, columns = plane.shape
    ky = max(1, -(-rows // size))
    kx = max(1, -(-columns // size))
    if (rows, columns) != (size * ky, size * kx):
        plane = cv2.resize(plane, (size * kx, size * ky), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(plane), ky, kx


def _block_extreme(plane: np.ndarray, ky: int, kx: int, op: np.ufunc) -> np.ndarray:
    """Maximum (``op=np.maximum``) or minimum of every ``ky`` x ``kx`` block of ``plane``.

    A dilation (erosion) by a ``ky`` x ``kx`` rectangle anchored at its top-left corner puts
    the maximum (minimum) of the block starting at each pixel there; the block corners are then
    picked. ``plane`` is an exact multiple of the block, so no window reaches past its edge (the
    border mode never matters). Integer extremes: the same numbers as a block-wise reduction.
    """
    import cv2

    if ky * kx == 1:
        return plane.copy()
    kernel = np.ones((ky, kx), np.uint8)
    morph = cv2.dilate if op is np.maximum else cv2.erode
    spread = morph(plane, kernel, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(spread[::ky, ::kx])


def model_input(view: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Reduce one rendered frame to the classifier's input.

    Parameters
    ----------
    view : numpy.ndarray
        A rendered frame, ``uint8``, shape ``(rows, columns)`` (greyscale) or
        ``(rows, columns, 3)`` (RGB), as :func:`scrubber.render.render_frame` returns it.
    size : int, optional
        Side of the square output (the model's input size).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(len(CHANNELS), size, size)``: per cell the mean, maximum and
        minimum luma and the maximum colour saturation (zero for greyscale frames).

    Raises
    ------
    ValueError
        If ``view`` is not a 2-D or 3-channel ``uint8`` frame, or is empty.
    """
    if view.dtype != np.uint8:
        raise ValueError(f"model_input expects a uint8 rendered frame; got dtype {view.dtype}")
    if view.size == 0:
        raise ValueError("model_input expects a non-empty frame")
    view = np.ascontiguousarray(view)
    luma, chroma = _luma_chroma(view)
    import cv2

    out = np.empty((len(CHANNELS), size, size), np.uint8)
    plane, ky, kx = _exact_multiple(luma, size)
    if ky * kx == 1:
        out[0] = out[1] = out[2] = plane
    else:
        # INTER_AREA over an exact integer factor is the plain block mean.
        out[0] = cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA)
        out[1] = _block_extreme(plane, ky, kx, np.maximum)
        out[2] = _block_extreme(plane, ky, kx, np.minimum)
    if chroma is None:
        out[3] = 0
    else:
        plane, ky, kx = _exact_multiple(chroma, size)
        out[3] = _block_extreme(plane, ky, kx, np.maximum)
    return out


def model_inputs(views: list[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """Stack :func:`model_input` of several frames into a ``float32`` batch scaled to [0, 1].

    Parameters
    ----------
    views : list of numpy.ndarray
        Rendered frames (see :func:`model_input`).
    size : int, optional
        Side of the square model input.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(len(views), len(CHANNELS), size, size)``.
    """
    batch = np.empty((len(views), len(CHANNELS), size, size), np.float32)
    for i, view in enumerate(views):
        batch[i] = model_input(view, size)
    batch *= _SCALE
    return batch


#: ``uint8`` model input to the model's [0, 1] scale: one multiplication, the same everywhere.
_SCALE: Final = np.float32(1.0 / 255.0)


def scale_inputs(inputs: np.ndarray) -> np.ndarray:
    """Scale raw ``uint8`` model inputs to the model's ``float32`` [0, 1], as :func:`model_inputs`.

    Parameters
    ----------
    inputs : numpy.ndarray
        ``uint8`` array of :func:`model_input` results, shape ``(n, channels, size, size)``.

    Returns
    -------
    numpy.ndarray
        A new ``float32`` array, bit for bit what :func:`model_inputs` gives for the same frames.
    """
    batch = inputs.astype(np.float32)
    batch *= _SCALE
    return batch
