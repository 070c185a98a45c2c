"""What a compressed frame says about itself: the image size in its JPEG, JPEG-LS or J2K header.

A decoder sizes its buffers from the codestream, not from the DICOM header: a 64 x 64 frame whose
JPEG 2000 header claims 60,000 x 60,000 pixels made OpenJPEG allocate gigabytes and spend half a
minute before failing. Reading the few header bytes first lets the reader refuse such a frame
before any decoder sees it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["DeclaredImage", "declared_image"]

_SOI: Final = b"\xff\xd8"
_SOC: Final = b"\xff\x4f"
_SIZ: Final = b"\xff\x51"
#: JPEG start-of-frame markers (SOF0-SOF15 without DHT, JPG and DAC) and JPEG-LS SOF55.
_SOF: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
)
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length follows
_JP2_SIGNATURE: Final = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@dataclass(frozen=True)
class DeclaredImage:
    """The image a codestream header declares.

    Attributes
    ----------
    rows, columns : int
        Its size (0 rows: a JPEG whose height a later DNL marker gives).
    components : int
        Samples per pixel.
    """

    rows: int
    columns: int
    components: int


def declared_image(frame: bytes) -> DeclaredImage | None:
    """Read the image size from the header of a JPEG, JPEG-LS or JPEG 2000 frame.

    Parameters
    ----------
    frame : bytes
        One frame's codestream (a JPEG 2000 frame may come in a JP2 file wrapper).

    Returns
    -------
    DeclaredImage or None
        What the header declares, or None when the bytes are none of these codestreams or their
        header cannot be parsed (the decoder then reports the damage).
    """
    try:
        if frame.startswith(_SOI):
            return _jpeg(frame)
        start = _j2k_start(frame)
        if start is not None:
            return _j2k(frame, start)
    except (IndexError, struct.error):
        return None
    return None


def _jpeg(frame: bytes) -> DeclaredImage | None:
    """JPEG (ISO/IEC 10918-1) and JPEG-LS (14495-1) share the marker and SOF layout."""
    offset = 2
    while offset + 4 <= len(frame):
        if frame[offset] != 0xFF:
            return None
        marker = frame[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in _STANDALONE:
            offset += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any SOF: not a frame header we know
            return None
        (length,) = struct.unpack_from(">H", frame, offset + 2)
        if marker in _SOF:
            # length, precision (1), height (2), width (2), components (1)
            _precision, rows, columns, components = struct.unpack_from(">BHHB", frame, offset + 4)
            return DeclaredImage(rows=rows, columns=columns, components=components)
        if length < 2:
            return None
        offset += 2 + length
    return None


def _j2k_start(frame: bytes) -> int | None:
    """Offset of the J2K codestream: 0, or inside a JP2 wrapper's ``jp2c`` box."""
    if frame.startswith(_SOC):
        return 0
    if not frame.startswith(_JP2_SIGNATURE):
        return None
    offset = 0
    while offset + 8 <= len(frame):
        length, kind = struct.unpack_from(">I4s", frame, offset)
        header = 8
        if length == 1:  # a 64-bit length follows
            (length,) = struct.unpack_from(">Q", frame, offset + 8)
            header = 16
        if kind == b"jp2c":
            return offset + header
        if length < header:
            return None
        offset += length
    return None


def _j2k(frame: bytes, start: int) -> DeclaredImage | None:
    """JPEG 2000 (15444-1 A.5.1): SIZ is the marker segment right after SOC."""
    if frame[start : start + 2] != _SOC or frame[start + 2 : start + 4] != _SIZ:
        return None
    # Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz
    fields = struct.unpack_from(">HHIIIIIIIIH", frame, start + 4)
    xsiz, ysiz, xosiz, yosiz, components = fields[2], fields[3], fields[4], fields[5], fields[10]
    return DeclaredImage(
        rows=max(0, ysiz - yosiz), columns=max(0, xsiz - xosiz), components=components
    )
