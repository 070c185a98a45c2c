"""Pixel data: what an instance's pixels are, and its frames decoded one at a time.

This module is the only place that calls pydicom's pixel API. Frames come out as *stored values*
(before any modality or VOI transform, in the photometric interpretation of the data set, YBR kept
as YBR), so that redaction can paint in the same domain and the render step can make the model view
from them.

Decoding uses pydicom 3's plugins (pylibjpeg with libjpeg, openjpeg and rle; pydicom's own RLE
and native decoders). Anything they cannot decode, and any pixel description that does not add up,
raises a typed :class:`~scrubber.errors.InputError` naming the reason, for the pipeline to route
to quarantine.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from scrubber.errors import ConfigError, InputError, UnreadableDicomError

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_FRAME_BYTES_ENV",
    "FrameTooLargeError",
    "PixelDescription",
    "UndecodablePixelsError",
    "UnsupportedPixelsError",
    "describe_pixels",
    "iter_frames",
    "max_frame_bytes",
    "transfer_syntax",
]

MAX_FRAME_BYTES = 512 * 1024 * 1024
"""Default largest decoded frame accepted (512 MiB); larger ones are refused before decoding."""

MAX_FRAME_BYTES_ENV = "SCRUBBER_MAX_FRAME_BYTES"
"""Environment variable that sets another frame limit, in bytes (workers inherit it)."""


def max_frame_bytes() -> int:
    """Return the largest decoded frame, in bytes, that decoding accepts.

    ``$SCRUBBER_MAX_FRAME_BYTES`` when set (read on every call, so spawned workers and long-lived
    servers follow it), else :data:`MAX_FRAME_BYTES`.

    Returns
    -------
    int
        The limit.

    Raises
    ------
    ConfigError
        If the variable is set to anything but a positive whole number.
    """
    text = os.environ.get(MAX_FRAME_BYTES_ENV, "").strip()
    if not text:
        return MAX_FRAME_BYTES
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise ConfigError(
            f"{MAX_FRAME_BYTES_ENV} must be a positive whole number of bytes (for example "
            f"{MAX_FRAME_BYTES}); unset it to use the default."
        )
    return int(text)


PHOTOMETRICS = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "PALETTE COLOR",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
        "YBR_PARTIAL_420",
    }
)


# Syntaxes whose pixels are lossy by definition, and those that may be either (JPEG 2000 and HTJ2K
# "lossless or lossy"): the latter count as lossy unless the data set says "00".
LOSSY_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.100",  # MPEG2 and later video syntaxes
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)
MAYBE_LOSSY_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 multi-component
        "1.2.840.10008.1.2.4.203",  # HTJ2K
        "1.2.840.10008.1.2.4.110",  # JPEG XL
        "1.2.840.10008.1.2.4.112",
    }
)


def _is_lossy(syntax: str, lossy_flag: str) -> bool:
    if lossy_flag == "01" or syntax in LOSSY_SYNTAXES:
        return True
    return syntax in MAYBE_LOSSY_SYNTAXES and lossy_flag != "00"


class UndecodablePixelsError(InputError):
    """The pixel data cannot be decoded by the installed codecs (or is damaged)."""

    reason = "undecodable"


class UnsupportedPixelsError(InputError):
    """The pixel description is missing, inconsistent or outside what scrubber handles."""

    reason = "unsupported_pixels"


class FrameTooLargeError(UnsupportedPixelsError):
    """A decoded frame would be larger than the configured limit (see :func:`max_frame_bytes`)."""

    reason = "frame_too_large"


@dataclass(frozen=True)
class PixelDescription:
    """The Image Pixel module of an instance, checked for consistency.

    Attributes
    ----------
    rows, columns : int
        Frame size.
    frames : int
        Number of frames (1 for single-frame instances).
    samples_per_pixel : int
        1 for greyscale and palette, 3 for colour.
    photometric : str
        Photometric Interpretation as stored.
    bits_allocated, bits_stored, high_bit : int
        Bit layout of each sample.
    signed : bool
        Pixel Representation 1.
    planar_configuration : int
        0 (colour-by-pixel) or 1 (colour-by-plane); 0 for single-sample data.
    transfer_syntax : str
        Transfer Syntax UID.
    compressed : bool
        Whether PixelData is encapsulated.
    lossy : bool
        Whether the transfer syntax is lossy (or the data set says lossy compression happened).
    """

    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    high_bit: int
    signed: bool
    planar_configuration: int
    transfer_syntax: str
    compressed: bool
    lossy: bool

    @property
    def frame_bytes(self) -> int:
        """Bytes of one decoded frame."""
        per_sample = max(1, (self.bits_allocated + 7) // 8)
        return self.rows * self.columns * self.samples_per_pixel * per_sample

    @property
    def has_unused_high_bits(self) -> bool:
        """Whether samples have bits above Bits Stored (where overlays may be embedded)."""
        return self.bits_allocated > self.bits_stored


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    try:
        value = ds.get(keyword, default)
    except Exception:  # pydicom cannot convert the stored value (too short for its VR, say)
        # a damaged value is the file's fault (unreadable), not an encoding scrubber lacks
        raise UnreadableDicomError(
            f"{keyword} cannot be read as its VR; the file is damaged and the pixels cannot be "
            "interpreted. Re-export it from the source."
        ) from None
    if value is None or value == "":
        if default is None:
            raise UnsupportedPixelsError(
                f"The Image Pixel module lacks {keyword}; the pixels cannot be interpreted."
            )
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UnsupportedPixelsError(
            f"{keyword} is not an integer; the pixels cannot be interpreted."
        ) from None


def describe_pixels(ds: Dataset) -> PixelDescription:
    """Read and check the pixel description of ``ds``.

    Parameters
    ----------
    ds : Dataset
        An instance with PixelData.

    Returns
    -------
    PixelDescription
        The checked description.

    Raises
    ------
    UnsupportedPixelsError
        If there is no PixelData, or the description is missing, inconsistent or absurd
        (more bits stored than allocated, an unknown photometric interpretation, colour with one
        sample, ...).
    FrameTooLargeError
        If a decoded frame would be larger than :func:`max_frame_bytes`.
    ConfigError
        If ``$SCRUBBER_MAX_FRAME_BYTES`` is malformed.
    """
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise UnsupportedPixelsError("The instance has no pixel data.")
    floating = "PixelData" not in ds
    syntax = transfer_syntax(ds)
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    samples = _int(ds, "SamplesPerPixel", 1)
    allocated = _int(ds, "BitsAllocated")
    stored = _int(ds, "BitsStored", allocated)
    high_bit = _int(ds, "HighBit", stored - 1)
    frames = _int(ds, "NumberOfFrames", 1) or 1
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    problems = []
    if rows <= 0 or columns <= 0 or frames <= 0:
        problems.append("Rows, Columns and Number of Frames must be positive")
    if floating:  # Float/Double Float Pixel Data carry no Bits Stored of their own
        stored, high_bit = allocated, allocated - 1
    if allocated not in (1, 8, 16, 32, 64) or not 1 <= stored <= allocated:
        problems.append("Bits Allocated/Bits Stored are inconsistent")
    if high_bit != stored - 1:
        problems.append("High Bit is not Bits Stored - 1")
    if photometric not in PHOTOMETRICS:
        problems.append("the Photometric Interpretation is missing or unknown")
    elif samples != (1 if photometric.startswith(("MONOCHROME", "PALETTE")) else 3):
        problems.append("Samples per Pixel does not match the Photometric Interpretation")
    elif photometric == "PALETTE COLOR" and not _has_palette(ds):
        problems.append("PALETTE COLOR has no Palette Color Lookup Table")
    if problems:
        raise UnsupportedPixelsError(
            "The pixel description does not add up: " + "; ".join(problems) + "."
        )
    description = PixelDescription(
        rows=rows,
        columns=columns,
        frames=frames,
        samples_per_pixel=samples,
        photometric=photometric,
        bits_allocated=allocated,
        bits_stored=stored,
        high_bit=high_bit,
        signed=_int(ds, "PixelRepresentation", 0) == 1,
        planar_configuration=_int(ds, "PlanarConfiguration", 0) if samples > 1 else 0,
        transfer_syntax=str(syntax),
        compressed=bool(syntax) and syntax.is_transfer_syntax and syntax.is_compressed,
        lossy=_is_lossy(str(syntax), str(ds.get("LossyImageCompression", "")).strip()),
    )
    limit = max_frame_bytes()
    if description.frame_bytes > limit:
        raise FrameTooLargeError(
            f"A decoded frame would take {description.frame_bytes} bytes, more than the "
            f"{limit} scrubber accepts; the instance is refused (raise the limit with "
            f"{MAX_FRAME_BYTES_ENV} if the frames are real)."
        )
    return description


_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _has_palette(ds: Dataset) -> bool:
    """Whether ``ds`` has a red, green and blue palette table (descriptor and data)."""
    return all(
        f"{colour}PaletteColorLookupTableDescriptor" in ds
        and (
            f"{colour}PaletteColorLookupTableData" in ds
            or f"Segmented{colour}PaletteColorLookupTableData" in ds
        )
        for colour in ("Red", "Green", "Blue")
    )


def transfer_syntax(ds: Dataset) -> UID:
    """Return the transfer syntax of ``ds``, setting it in the file meta when it was missing.

    A data set read without file meta (ACR-NEMA era, "headless" exports) gets the syntax its
    encoding implies, so that pydicom's decoders, which read it from the file meta, can run.

    Parameters
    ----------
    ds : Dataset
        The instance.

    Returns
    -------
    UID
        The Transfer Syntax UID.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return UID(str(meta.TransferSyntaxUID))
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None or implicit:
        syntax = ImplicitVRLittleEndian
    else:
        syntax = ExplicitVRLittleEndian if little in (None, True) else ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    return syntax


def iter_frames(
    ds: Dataset,
    *,
    indices: list[int] | None = None,
    keep_unused_bits: bool = False,
    description: PixelDescription | None = None,
) -> Iterator[np.ndarray]:
    """Decode the frames of ``ds`` one at a time, as stored values.

    Parameters
    ----------
    ds : Dataset
        The instance.
    indices : list of int, optional
        Only these frames (in this order); all frames by default.
    keep_unused_bits : bool, optional
        Keep bits above Bits Stored (where overlays may be embedded) instead of clearing them.
    description : PixelDescription, optional
        ``describe_pixels(ds)``, if the caller has it already.

    Yields
    ------
    numpy.ndarray
        ``(rows, columns)`` for one sample per pixel, ``(rows, columns, 3)`` for colour (YBR
        kept as YBR, colour-by-plane data interleaved), in the stored value domain.

    Raises
    ------
    UnsupportedPixelsError
        If the pixel description does not add up.
    UndecodablePixelsError
        If a frame cannot be decoded.
    """
    from pydicom.pixels.utils import iter_pixels

    description = description or describe_pixels(ds)
    wanted = list(range(description.frames)) if indices is None else indices
    if any(not 0 <= index < description.frames for index in wanted):
        raise UnsupportedPixelsError("A requested frame index is outside the instance.")
    if description.compressed:
        _check_codestreams(ds, description, set(wanted))
    native = _native_frames(ds, description)
    if native is not None:
        # pydicom's native decoder gives the same arrays; for the commonest layout its
        # per-call setup and checks cost as much as the decode itself (a CT slice: 0.2 ms).
        for index in wanted:
            yield _native_frame(native, index, description, correct=not keep_unused_bits)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = iter_pixels(ds, indices=wanted, raw=True, correct_unused_bits=not keep_unused_bits)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except (KeyboardInterrupt, SystemExit, GeneratorExit):
                raise
            except BaseException as exc:  # any codec failure on untrusted data, including a
                # Rust decoder's panic (pyo3's PanicException is not an Exception)
                raise UndecodablePixelsError(
                    f"The pixel data ({UID(description.transfer_syntax).name or 'unknown syntax'})"
                    f" cannot be decoded: {type(exc).__name__}. Install a decoder for it, or "
                    "quarantine the instance."
                ) from None
            yield frame


#: Transfer syntaxes whose pixels :func:`_native_frames` slices itself.
_LITTLE_ENDIAN_NATIVE: Final = frozenset({str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)})


def _native_frames(ds: Dataset, description: PixelDescription) -> bytes | None:
    """Return PixelData's bytes when frames can be sliced from them directly, else None.

    Only the commonest layout qualifies: uncompressed little-endian PixelData of one sample per
    pixel in whole bytes (8 or 16 bits allocated), long enough for every frame. Everything else
    (colour, 1-bit and 32-bit samples, big endian, float pixels, short or deferred values) goes
    through pydicom's decoders, which also report what is wrong with a damaged value.
    """
    if (
        description.transfer_syntax not in _LITTLE_ENDIAN_NATIVE
        or description.samples_per_pixel != 1
        or description.bits_allocated not in (8, 16)
    ):
        return None
    elem = ds.get_item("PixelData") if "PixelData" in ds else None
    value = getattr(elem, "value", None)
    if not isinstance(value, bytes):
        return None
    if len(value) < description.frames * description.frame_bytes:
        return None
    return value


def _native_frame(
    buffer: bytes, index: int, description: PixelDescription, *, correct: bool
) -> np.ndarray:
    """Frame ``index`` of :func:`_native_frames`'s bytes, as pydicom's native decoder gives it.

    A new writable array of the stored values; with ``correct``, the bits above Bits Stored are
    cleared (unsigned) or set from the sign bit (signed), by the same shift pydicom uses.
    """
    size = description.bits_allocated // 8
    dtype = np.dtype(f"<{'i' if description.signed else 'u'}{size}")
    count = description.rows * description.columns
    frame = np.frombuffer(buffer, dtype, count, index * description.frame_bytes).reshape(
        description.rows, description.columns
    )
    shift = description.bits_allocated - description.bits_stored
    if not correct or shift == 0:
        return frame.copy()
    shifted: np.ndarray = np.left_shift(frame, shift)
    np.right_shift(shifted, shift, out=shifted)
    return shifted


def _check_codestreams(ds: Dataset, description: PixelDescription, wanted: set[int]) -> None:
    """Refuse compressed frames whose own header declares another image than the instance's.

    Decoders size their buffers from the codestream: a small frame claiming a huge image costs
    gigabytes and minutes before the decoder fails. Frames this cannot parse are left to the
    decoder, which reports their damage.
    """
    from pydicom.encaps import generate_fragmented_frames

    from scrubber.dicom_io.codestream import declared_image

    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index, fragments in enumerate(
                generate_fragmented_frames(
                    ds.PixelData, number_of_frames=description.frames, extended_offsets=offsets
                )
            ):
                if index >= description.frames:
                    return
                if index not in wanted:
                    continue
                declared = declared_image(b"".join(fragments))
                if declared is not None and (
                    declared.rows not in (0, description.rows)
                    or declared.columns != description.columns
                    or declared.components != description.samples_per_pixel
                ):
                    raise UndecodablePixelsError(
                        f"Frame {index + 1}'s compressed data declares a {declared.columns} x "
                        f"{declared.rows} image with {declared.components} sample(s) per pixel, "
                        f"but the instance is {description.columns} x {description.rows} with "
                        f"{description.samples_per_pixel}; it is not decoded (a decoder would "
                        "size its memory from the larger claim). Quarantine the instance."
                    )
    except UndecodablePixelsError:
        raise
    except Exception:  # frame boundaries pydicom cannot find: the decoder reports them
        return
