"""The synthetic pixel matrix the decode and redaction tests share: syntaxes x image kinds."""

from __future__ import annotations

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
    JPEGLSLossless,
]
# photometric, bits stored, signed, planar configuration
KINDS = [
    ("MONOCHROME2", 8, False, 0),
    ("MONOCHROME2", 12, False, 0),
    ("MONOCHROME2", 16, True, 0),
    ("MONOCHROME1", 16, False, 0),
    ("RGB", 8, False, 0),
    ("RGB", 8, False, 1),
    ("YBR_FULL", 8, False, 0),
    ("PALETTE COLOR", 8, False, 0),
]
J2K_SKIP = "pydicom's JPEG 2000 encoder makes colour-by-pixel, non-palette data only"


def kind_id(kind: tuple[str, int, bool, int]) -> str:
    photometric, bits, signed, planar = kind
    return f"{photometric.replace(' ', '_')}-{bits}{'s' if signed else 'u'}-pc{planar}"


def syntax_id(syntax: str) -> str:
    from pydicom.uid import UID

    return UID(syntax).name.replace(" ", "_")


def encodable(syntax: str, kind: tuple[str, int, bool, int]) -> bool:
    photometric, _bits, _signed, planar = kind
    return not (syntax == JPEG2000Lossless and (planar == 1 or photometric == "PALETTE COLOR"))
