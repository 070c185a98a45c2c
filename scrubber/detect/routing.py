"""Which frames go to OCR: the classifier's score, two thresholds and header priors.

The classifier gives every frame a probability that it carries burned-in text. Two thresholds
from the model's manifest cut that range into three parts, and header flags override the score:

============================  ===========================  ======================================
score                         route (:func:`route_frame`)  meaning
============================  ===========================  ======================================
``score < low``, no flag      ``CLEAN``                    confidently free of text: the frame's
                                                           pixels are kept as they are
``low <= score < high``       ``OCR``                      unsure: OCR decides
``score >= high``             ``OCR``                      confidently carries text
any score, any header flag    ``OCR``                      the header says text is likely
``NaN`` (broken model)        ``OCR``                      fail closed
============================  ===========================  ======================================

:func:`expects_text` marks the third row. When the classifier is confident that text is present
(``score >= high``) and OCR then finds no text at all in the frame, the two disagree: one of them
is wrong, and scrubber cannot tell which. The pipeline must not release such an instance;
it goes to quarantine with the reason :data:`UNCERTAIN_SCORE_REASON` (``"uncertain_score"``) for a
person to look at. Frames in the middle band carry no such expectation: OCR finding nothing there
simply confirms a weak score. A ``NaN`` score also expects text, so a broken model can never let a
frame through on OCR's silence alone.

Header flags (:func:`header_flags`) are stable slugs, safe for logs and reports (they name a
reason, never a header value). Each forces OCR on every frame of the instance, whatever the score:

``burned_in_annotation``
    Burned In Annotation (0028,0301) is ``YES``: the sender says so.
``secondary_capture``
    The SOP Class (or the file meta's Media Storage SOP Class) is one of the five Secondary
    Capture storage classes (1.2.840.10008.5.1.4.1.1.7 and .7.1 to .7.4): screen saves, scanned
    documents, workstation snapshots, dose pages.
``converted_image``
    Conversion Type (0008,0064) is present (DV digitized video, DI digital interface, DF digitized
    film, WSD workstation, SD scanned document, SI scanned image, DRW drawing, SYN synthetic): the
    pixels were captured from a screen, a video feed, film or paper, which carry labels.
``ultrasound``
    Modality US or IVUS, an ultrasound SOP class (US Image, US Multi-frame Image, Enhanced US
    Volume, and their retired predecessors), or a Sequence of Ultrasound Regions (0018,6011), which
    only ultrasound-derived images carry: scanners burn the patient banner into every frame.
``visible_light``
    A Visible Light SOP class (1.2.840.10008.5.1.4.1.1.77.1 and below: endoscopy, microscopy,
    photography, ophthalmic photography and tomography, whole-slide, dermoscopy) or Modality ES,
    XC, GM, OP or SM: camera and video towers stamp patient data into the image, and slide label
    and overview images photograph a label with the patient's name or accession number.
``screen_capture``
    An Image Type (0008,0008) value has the word SCREEN, SCREENSHOT, CAPTURE or SNAPSHOT (GE's
    ``SCREEN SAVE``, Philips' ``SCREENSHOT``): a picture of a display, with its text.
``report_image``
    An Image Type value has the word REPORT, DOSE or PROTOCOL (Siemens' ``CSA REPORT``, dose
    info and patient protocol pages): a rendered page of text, which names the patient.
``derived_secondary``
    Image Type value 2 is ``SECONDARY``: made after the examination (reformats, 3-D renders, key
    images), where workstations often burn in annotations. This flag costs OCR time on large
    reformatted series; it is there because such renders are a common route for text to leak.
``colour_render``
    A greyscale modality (CT, MR, PT, NM, CR, DX, MG, RF, XA, IO, PX, RG) with colour pixels (RGB or
    YBR): a fused or annotated render or a screenshot rather than an acquisition.
``unreadable_header``
    One of the attributes above is present but cannot be parsed: fail closed.

Words in Image Type values are matched whole (``SCREENING`` is not ``SCREEN``). Overlay planes,
graphic annotations and icon images are not frame routing's business: the redaction step handles
them for every instance.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset

from scrubber.errors import ConfigError

__all__ = [
    "HEADER_FLAGS",
    "UNCERTAIN_SCORE_REASON",
    "FrameRoute",
    "Thresholds",
    "expects_text",
    "header_flags",
    "route_frame",
]

#: Quarantine reason when the classifier is confident of text that OCR does not find.
UNCERTAIN_SCORE_REASON: Final = "uncertain_score"

#: Every header flag :func:`header_flags` can return, in the order it returns them, with what it
#: means. The slugs are stable: reports, ledgers and dashboards may rely on them.
HEADER_FLAGS: Final[Mapping[str, str]] = {
    "burned_in_annotation": "Burned In Annotation is YES",
    "secondary_capture": "a Secondary Capture SOP class",
    "converted_image": "Conversion Type present (captured from video, film, screen or paper)",
    "ultrasound": "an ultrasound modality, SOP class or ultrasound regions",
    "visible_light": "a visible-light (camera, endoscope, microscope) SOP class or modality",
    "screen_capture": "Image Type names a screen save or capture",
    "report_image": "Image Type names a report, dose or protocol page",
    "derived_secondary": "Image Type value 2 is SECONDARY",
    "colour_render": "colour pixels from a greyscale modality",
    "unreadable_header": "an attribute routing depends on cannot be parsed",
}

_SECONDARY_CAPTURE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    }
)
_ULTRASOUND_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image (retired)
        "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image (retired)
    }
)
_VISIBLE_LIGHT_ROOT = "1.2.840.10008.5.1.4.1.1.77.1"
_ULTRASOUND_MODALITIES = frozenset({"US", "IVUS"})
_VISIBLE_LIGHT_MODALITIES = frozenset({"ES", "XC", "GM", "OP", "SM"})
_GREYSCALE_MODALITIES = frozenset(
    {"CT", "MR", "PT", "NM", "CR", "DX", "MG", "RF", "XA", "IO", "PX", "RG"}
)
_SCREEN_WORDS = frozenset({"SCREEN", "SCREENSHOT", "SCREENSAVE", "CAPTURE", "SNAPSHOT"})
_REPORT_WORDS = frozenset({"REPORT", "DOSE", "DOSEREPORT", "PROTOCOL"})
_WORD = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True)
class Thresholds:
    """The two score thresholds of a classifier.

    Parameters
    ----------
    low : float
        Scores below it (with no header flag) mean "no text": the frame skips OCR.
    high : float
        Scores at or above it mean "text, with confidence": OCR finding none is a disagreement.

    Raises
    ------
    ConfigError
        Unless ``0 <= low <= high <= 1`` (both finite numbers).
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"The classifier's {name} threshold is not a number; give thresholds as "
                    "numbers with 0 <= low <= high <= 1."
                )
            object.__setattr__(self, name, float(value))
        if not (0.0 <= self.low <= self.high <= 1.0):  # also rejects NaN
            raise ConfigError(
                f"The classifier thresholds low={self.low} and high={self.high} are out of order "
                "or out of range; they must satisfy 0 <= low <= high <= 1."
            )


class FrameRoute(enum.StrEnum):
    """Where a frame goes after classification."""

    CLEAN = "clean"
    """No text with confidence, and no header flag: the pixels are kept as they are."""
    OCR = "ocr"
    """Text is possible: OCR looks for it."""


class _UnreadableError(Exception):
    """An attribute is present but cannot be parsed."""


def _strings(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """Values of a text attribute, stripped and upper-cased (empty if absent)."""
    if keyword not in ds:
        return ()
    try:
        value = ds.get(keyword)
        if value is None:
            return ()
        items: Iterable[object] = (
            (value,) if isinstance(value, str | bytes) or not _iterable(value) else value
        )
        return tuple(
            (item.decode("ascii", "replace") if isinstance(item, bytes) else str(item))
            .strip()
            .upper()
            for item in items
        )
    except Exception as exc:  # a malformed value in untrusted input
        raise _UnreadableError(keyword) from exc


def _iterable(value: object) -> bool:
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


_Strings = Callable[[Dataset, str], tuple[str, ...]]


def _memoised(strings: _Strings) -> _Strings:
    """``strings`` reading each attribute of a data set once (an unreadable one raises again)."""
    memo: dict[tuple[int, str], tuple[str, ...] | _UnreadableError] = {}

    def read(ds: Dataset, keyword: str) -> tuple[str, ...]:
        key = (id(ds), keyword)
        if key not in memo:
            try:
                memo[key] = strings(ds, keyword)
            except _UnreadableError as exc:
                memo[key] = exc
        found = memo[key]
        if isinstance(found, _UnreadableError):
            raise found
        return found

    return read


def _sop_classes(ds: Dataset, strings: _Strings) -> set[str]:
    classes = set(strings(ds, "SOPClassUID"))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        classes.update(strings(meta, "MediaStorageSOPClassUID"))
    return classes


def _words(values: Iterable[str]) -> set[str]:
    return {word for value in values for word in _WORD.findall(value)}


def header_flags(ds: Dataset) -> tuple[str, ...]:
    """Header reasons that force OCR on every frame of ``ds``, whatever the classifier says.

    Parameters
    ----------
    ds : Dataset
        The instance, before metadata de-identification (the flags read only attributes the
        de-identifier keeps, but reading them first is what the pipeline does).

    Returns
    -------
    tuple of str
        The flags that apply, each a key of :data:`HEADER_FLAGS`, in that mapping's order; empty
        when the header gives no reason to expect text. The module docstring says what each means.
    """
    found: set[str] = set()
    strings = _memoised(_strings)  # several checks read Modality, Image Type, SOP Class UID
    checks: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("burned_in_annotation", lambda: "YES" in strings(ds, "BurnedInAnnotation")),
        ("secondary_capture", lambda: bool(_sop_classes(ds, strings) & _SECONDARY_CAPTURE)),
        ("converted_image", lambda: any(strings(ds, "ConversionType"))),
        ("ultrasound", lambda: _is_ultrasound(ds, strings)),
        ("visible_light", lambda: _is_visible_light(ds, strings)),
        ("screen_capture", lambda: bool(_words(strings(ds, "ImageType")) & _SCREEN_WORDS)),
        ("report_image", lambda: bool(_words(strings(ds, "ImageType")) & _REPORT_WORDS)),
        ("derived_secondary", lambda: strings(ds, "ImageType")[1:2] == ("SECONDARY",)),
        ("colour_render", lambda: _is_colour_render(ds, strings)),
    )
    for flag, check in checks:
        try:
            if check():
                found.add(flag)
        except _UnreadableError:
            found.add("unreadable_header")
    return tuple(flag for flag in HEADER_FLAGS if flag in found)


def _is_ultrasound(ds: Dataset, strings: _Strings) -> bool:
    if set(strings(ds, "Modality")) & _ULTRASOUND_MODALITIES:
        return True
    if _sop_classes(ds, strings) & _ULTRASOUND_CLASSES:
        return True
    return "SequenceOfUltrasoundRegions" in ds


def _is_visible_light(ds: Dataset, strings: _Strings) -> bool:
    if set(strings(ds, "Modality")) & _VISIBLE_LIGHT_MODALITIES:
        return True
    return any(
        uid == _VISIBLE_LIGHT_ROOT or uid.startswith(_VISIBLE_LIGHT_ROOT + ".")
        for uid in _sop_classes(ds, strings)
    )


def _is_colour_render(ds: Dataset, strings: _Strings) -> bool:
    if not set(strings(ds, "Modality")) & _GREYSCALE_MODALITIES:
        return False
    photometric = strings(ds, "PhotometricInterpretation")
    return bool(photometric) and photometric[0].startswith(("RGB", "YBR"))


def route_frame(score: float, flags: Iterable[str], thresholds: Thresholds) -> FrameRoute:
    """Route one frame by its classifier score and its instance's header flags.

    Parameters
    ----------
    score : float
        The classifier's probability that the frame carries burned-in text.
    flags : iterable of str
        The instance's :func:`header_flags`.
    thresholds : Thresholds
        The classifier's thresholds.

    Returns
    -------
    FrameRoute
        ``CLEAN`` only when ``score < thresholds.low`` and there is no flag; ``OCR`` otherwise
        (a ``NaN`` score included).
    """
    if any(True for _ in flags):
        return FrameRoute.OCR
    if math.isnan(score) or not score < thresholds.low:
        return FrameRoute.OCR
    return FrameRoute.CLEAN


def expects_text(score: float, thresholds: Thresholds) -> bool:
    """Whether the classifier is confident the frame carries text.

    When it is, OCR finding no text in the frame means the two disagree, and the instance goes to
    quarantine with the reason :data:`UNCERTAIN_SCORE_REASON` instead of being released.

    Parameters
    ----------
    score : float
        The classifier's probability that the frame carries burned-in text.
    thresholds : Thresholds
        The classifier's thresholds.

    Returns
    -------
    bool
        ``score >= thresholds.high``; also ``True`` for a ``NaN`` score (fail closed).
    """
    return not score < thresholds.high
