"""Writing changed frames back into PixelData, by the transfer-syntax policy of DESIGN.md.

* Native input (implicit/explicit little endian, explicit big endian, deflated): the same syntax,
  same sample layout (planar configuration, byte order, bit depth).
* Lossless compressed input that pydicom can encode (RLE Lossless, JPEG 2000 Lossless, JPEG-LS
  Lossless when ``pyjpegls`` is installed): re-encoded losslessly in the same syntax.
* Other lossless compressed input (JPEG Lossless, HTJ2K Lossless, ...): Explicit VR Little Endian.
* Lossy input (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000 that may be lossy, ...):
  Explicit VR Little Endian, never a second lossy generation. Lossy Image Compression stays "01"
  with its method and ratio, as the pixels still carry the first generation's loss.
* Colour: YBR from a compressed stream written uncompressed becomes RGB; uncompressed subsampled
  YBR (YBR_FULL_422) is decoded to full resolution and written as YBR_FULL; JPEG 2000's
  YBR_ICT/YBR_RCT decode to RGB and are written as RGB (or re-encoded as YBR_RCT).

Sequences holding compressed pixel data of their own (icons, private thumbnails) are removed when
the data set becomes uncompressed. After encoding, Photometric Interpretation, Planar
Configuration, Number of Frames and the transfer syntax always describe the bytes in PixelData.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from scrubber.dicom_io.pixels import PixelDescription, UnsupportedPixelsError

__all__ = ["NATIVE_SYNTAXES", "encode_frames", "output_syntax"]

NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
_REENCODABLE = (RLELossless, JPEG2000Lossless, JPEGLSLossless)


class EncodeError(UnsupportedPixelsError):
    """Changed frames cannot be written back safely."""

    reason = "unencodable"


def _encoder_available(syntax: str) -> bool:
    from pydicom.pixels.encoders.base import get_encoder

    try:
        return bool(get_encoder(syntax).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


def output_syntax(description: PixelDescription) -> UID:
    """Return the transfer syntax changed frames of this instance are written in.

    Parameters
    ----------
    description : PixelDescription
        The input's pixel description.

    Returns
    -------
    UID
        The same syntax where that is lossless and possible, else Explicit VR Little Endian.
    """
    syntax = UID(description.transfer_syntax)
    if syntax in NATIVE_SYNTAXES:
        return syntax
    if not description.lossy and syntax in _REENCODABLE and _encoder_available(syntax):
        return syntax
    return ExplicitVRLittleEndian


def _native_bytes(array: np.ndarray, description: PixelDescription, big_endian: bool) -> bytes:
    """Lay out frames as native PixelData: sample order, byte order and bit depth of the input."""
    if description.bits_allocated == 1:
        from pydicom.pixels.utils import pack_bits

        return bytes(pack_bits(array))
    kind = "f" if array.dtype.kind == "f" else "i" if description.signed else "u"
    dtype = np.dtype(f"{'>' if big_endian else '<'}{kind}{description.bits_allocated // 8}")
    if description.samples_per_pixel > 1 and description.planar_configuration == 1:
        array = np.moveaxis(array, -1, -3)  # (frames,) rows, columns, samples -> samples, rows, ...
    data = np.ascontiguousarray(array).astype(dtype, copy=False).tobytes()
    return data + b"\x00" * (len(data) % 2)


def encode_frames(ds: Dataset, frames: list[np.ndarray], description: PixelDescription) -> UID:
    """Replace the pixel data of ``ds`` with ``frames``, by the module's policy.

    Parameters
    ----------
    ds : Dataset
        The instance; its PixelData, file meta and pixel attributes are updated.
    frames : list of numpy.ndarray
        Every frame, as stored values in the layout :func:`iter_frames` yields.
    description : PixelDescription
        The input's pixel description.

    Returns
    -------
    UID
        The transfer syntax now in the file meta.

    Raises
    ------
    EncodeError
        If the frames do not match the description or an encoder fails.
    """
    if len(frames) != description.frames:
        raise EncodeError("The number of frames to write differs from the instance's.")
    array = np.stack(frames) if description.frames > 1 else frames[0]
    source, syntax = UID(description.transfer_syntax), output_syntax(description)
    photometric = description.photometric
    if source not in NATIVE_SYNTAXES and photometric in ("YBR_ICT", "YBR_RCT"):
        # The JPEG 2000 decoder applied the inverse component transform: the frames are RGB.
        photometric = "RGB"
    elif photometric.startswith(("YBR_FULL", "YBR_PARTIAL")):
        if source not in NATIVE_SYNTAXES and description.lossy and syntax in NATIVE_SYNTAXES:
            # A lossy YBR stream (JPEG) written uncompressed: as RGB, the form every IOD accepts
            # uncompressed (the source was lossy, so the rounding costs nothing new).
            from pydicom.pixels.processing import convert_color_space

            array = convert_color_space(array, "YBR_FULL", "RGB", per_frame=description.frames > 1)
            photometric = "RGB"
        elif photometric != "YBR_FULL":
            # Frames come back from the decoder at full chroma resolution, and are written so.
            photometric = "YBR_FULL"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if syntax not in NATIVE_SYNTAXES:
                if syntax == JPEG2000Lossless and description.photometric == "YBR_RCT":
                    photometric = "YBR_RCT"  # pydicom then applies the reversible transform
                try:
                    ds.PhotometricInterpretation = photometric
                    ds.compress(syntax, array, generate_instance_uid=False)
                except Exception:  # the encoder refuses this layout: lossless uncompressed
                    syntax = ExplicitVRLittleEndian
            if syntax in NATIVE_SYNTAXES:
                _write_native(ds, array, description, photometric, source, syntax)
    except Exception as exc:
        raise EncodeError(
            f"Writing the changed frames in {syntax.name} failed ({type(exc).__name__}); the "
            "instance is refused rather than written with pixels that may not match."
        ) from None
    if description.lossy:
        _keep_lossy_history(ds, source)
    return syntax


def _write_native(
    ds: Dataset,
    array: np.ndarray,
    description: PixelDescription,
    photometric: str,
    source: UID,
    syntax: UID,
) -> None:
    layout = description
    if source not in NATIVE_SYNTAXES:
        ds.file_meta.TransferSyntaxUID = syntax
        _drop_encapsulated_sequences(ds)
        layout = replace(description, planar_configuration=0)
        if description.samples_per_pixel > 1:
            ds.PlanarConfiguration = 0
    keyword = next(k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds)
    data = _native_bytes(array, layout, syntax == ExplicitVRBigEndian)
    setattr(ds, keyword, data)
    if keyword == "PixelData":
        ds["PixelData"].VR = "OB" if description.bits_allocated <= 8 else "OW"
    ds[keyword].is_undefined_length = False
    ds.PhotometricInterpretation = photometric
    for extended in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if extended in ds:
            delattr(ds, extended)


def _holds_encapsulated(item: Dataset) -> bool:
    for elem in item:
        if elem.VR == "SQ":
            if any(_holds_encapsulated(child) for child in elem.value or []):
                return True
        elif elem.is_undefined_length:
            return True
    return False


def _drop_encapsulated_sequences(ds: Dataset) -> None:
    """Remove sequences that hold compressed pixel data of their own (icons, private thumbnails).

    An uncompressed data set cannot carry encapsulated values, and such thumbnails show the image
    as it was before redaction anyway.
    """
    for tag in list(ds.keys()):
        elem = ds[tag]
        if elem.VR == "SQ" and any(_holds_encapsulated(item) for item in elem.value or []):
            del ds[tag]


_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}


def _keep_lossy_history(ds: Dataset, source: str) -> None:
    """Record that these pixels went through lossy compression once (PS3.3 C.7.6.1.1.5)."""
    ds.LossyImageCompression = "01"
    method = _LOSSY_METHODS.get(source)
    if method is not None and "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method
