"""The PHI decision: which text regions OCR found get blacked out, and the boxes that do it.

Two policies:

``all`` (the default)
    Every text region is blacked out, whatever it says, except lone marks: one glyph or one stroke
    (:func:`is_lone_mark`), which identifies nobody under either policy.
``phi``
    Text that identifies nobody is kept: laterality and view markers, units, scanner parameters,
    scale labels and plain small numbers. A region is kept only when *every* word in it is such a
    token and nothing about it looks identifying; anything else is blacked out. In particular a
    region is redacted when

    - the engine read it with a confidence below ``min_confidence`` (``unreadable``),
    - it contains, fuzzily, any identifying value captured from the instance's own header before
      de-identification: names in any order and with any separators, IDs, accession numbers,
      dates in every common spelling, institution and physicians (``header_match``),
    - it looks like a date (``date``), a time of day (``time``), an ID-like run of five or more
      digits (``id_like``) or a personal name written ``Last, First`` or ``LAST^FIRST``
      (``name_like``),
    - or it contains any word outside the allow-list (``unknown_word``).

    When unsure, redact.

:func:`redaction_boxes` turns the regions to redact into paint boxes: each grows by a margin, and
boxes of one text line merge into one.

Decisions carry a reason slug and never the text, so they can be logged and counted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from scrubber.detect.ocr import TextRegion

__all__ = [
    "SAFE_TOKENS",
    "Decision",
    "Policy",
    "decide",
    "header_match",
    "is_lone_mark",
    "redaction_boxes",
]


class Policy(enum.StrEnum):
    """Which text to black out."""

    ALL = "all"
    PHI = "phi"


#: Words that identify nobody (compared upper-case, without surrounding punctuation).
SAFE_TOKENS: Final = frozenset(
    {
        # laterality, orientation and views
        "L", "R", "LT", "RT", "LEFT", "RIGHT", "A", "P", "H", "F", "S", "I", "AP", "PA", "LAT",
        "LATERAL", "OBL", "OBLIQUE", "AX", "AXIAL", "COR", "CORONAL", "SAG", "SAGITTAL", "TRV",
        "TRANS", "TRANSVERSE", "LONG", "LONGITUDINAL", "ANT", "POST", "SUP", "INF", "MED", "PROX",
        "DIST", "MID", "UPPER", "LOWER", "CC", "MLO", "ML", "LM", "XCCL", "SUPINE", "PRONE",
        "ERECT", "UPRIGHT", "DECUB", "STANDING", "SITTING", "HFS", "FFS", "HFP", "FFP", "VIEW",
        "INSP", "EXP", "FLEX", "EXT", "PORTABLE", "SCOUT", "LOCALIZER",
        # units
        "MM", "CM", "M", "MS", "SEC", "MIN", "HZ", "KHZ", "MHZ", "DB", "KV", "KVP", "MA",
        "MAS", "MGY", "CGY", "GY", "BPM", "FPS", "DEG", "MMHG", "W", "CM/S", "M/S", "MM/S",
        "X", "%",
        # scanner and display parameters
        "WL", "WW", "C", "GAIN", "GN", "DEPTH", "D", "FREQ", "FR", "DR", "PWR", "POWER", "MI",
        "TI", "TIS", "TIB", "TIC", "FOCUS", "ZOOM", "DYN", "RANGE", "MAP", "PERSIST", "PRF",
        "WF", "SV", "ANGLE", "TE", "TR", "FA", "ST", "SL", "FOV", "NEX", "ETL", "BW", "KERNEL",
        "SCALE", "THK", "THICKNESS", "SPACING", "PITCH", "ROT", "TILT", "MAG", "CINE", "FRAME",
        "IMG", "IM", "SE", "SERIES", "IMAGE", "SLICE", "ECHO", "B", "M-MODE", "PW", "CW", "CFM",
        "CFI", "PD", "THI", "HARM", "HI", "LO", "LOW", "HIGH", "RES", "GEN", "PEN", "Q", "E",
        "V", "CONTRAST", "NO", "POST-CONTRAST", "PRE", "T1", "T2", "FLAIR", "DWI", "ADC", "SWI",
        "STIR", "GRE", "FSE", "TSE", "EPI", "MIP", "MPR", "VR", "3D", "2D", "4D",
    }
)  # fmt: skip

_UNITS: Final = (
    r"mm|cm|m|s|ms|sec|hz|khz|mhz|db|kv|kvp|ma|mas|mgy|cgy|gy|bpm|fps|deg|mmhg|ml|cm/s|m/s|mm/s|"
    r"%|x|°"
)
#: A small number, optionally signed, with a unit: scale labels and parameter values.
_SMALL_NUMBER: Final = re.compile(rf"^[-+x\u00d7]?\d{{1,4}}(?:[.,]\d{{1,3}})?(?:{_UNITS})?$", re.I)
_DATE: Final = re.compile(
    r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}\b"  # 12/03/1961, 1961-03-12, 12.03.61
    r"|\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"  # 19610312
    r"|\b\d{1,2}[- ]?(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*[- ]?\d{2,4}\b"
    r"|\b(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*[- ]\d{1,2},?[- ]\d{2,4}\b",
    re.I,
)
_TIME: Final = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AP]M)?\b", re.I)
_ID_LIKE: Final = re.compile(r"\d{5,}")
_NAME_LIKE: Final = re.compile(r"[A-Za-z]{2,}\s*[,^]\s*[A-Za-z]{2,}")
_TOKEN_SPLIT: Final = re.compile(r"[\s;|]+")
_STRIP: Final = "()[]{}<>:;,.!?\"'`*#=_~"


@dataclass(frozen=True)
class Decision:
    """What happens to one text region.

    Attributes
    ----------
    region : TextRegion
        The region.
    redact : bool
        Whether it is blacked out.
    reason : str
        Why, as a slug safe for logs: ``policy_all``, ``unreadable``, ``header_match``, ``date``,
        ``time``, ``id_like``, ``name_like``, ``unknown_word`` or (kept) ``safe_text`` and
        ``lone_mark`` (see :func:`is_lone_mark`).
    """

    region: TextRegion
    redact: bool
    reason: str


def _normalise(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def header_match(text: str, terms: Iterable[str], threshold: float = 85.0) -> bool:
    """Whether ``text`` contains, fuzzily, any of the identifying ``terms``.

    Comparison ignores case, spaces and punctuation, so ``DOE^JOHN`` matches ``Doe, John`` and
    ``JOHN DOE`` (person names also enter the terms word by word), and a date captured as
    ``19610312`` matches ``1961-03-12``. Terms of four or more characters match with OCR errors
    (a partial similarity of at least ``threshold`` percent); shorter terms must appear exactly.

    Parameters
    ----------
    text : str
        What OCR read.
    terms : iterable of str
        Identifying values (:meth:`scrubber.deid.terms.HeaderTerms.terms`).
    threshold : float, optional
        Least partial-ratio similarity, in percent.

    Returns
    -------
    bool
        True when any term is found.
    """
    from rapidfuzz import fuzz

    flat = _normalise(text)
    if not flat:
        return False
    for term in terms:
        key = _normalise(term)
        if len(key) < 3:
            continue
        if key in flat:
            return True
        if (
            len(key) >= 4
            and len(flat) >= len(key) - 1
            and fuzz.partial_ratio(key, flat) >= threshold
        ):
            return True
    return False


def _token_is_safe(token: str) -> bool:
    word = token.strip(_STRIP)
    if not word:
        return True
    if word.upper() in SAFE_TOKENS:
        return True
    return bool(_SMALL_NUMBER.match(word))


def _judge(region: TextRegion, terms: Sequence[str], min_confidence: float) -> Decision:
    text = region.text.strip()
    if not text or region.confidence < min_confidence:
        return Decision(region, True, "unreadable")
    if terms and header_match(text, terms):
        return Decision(region, True, "header_match")
    if _DATE.search(text):
        return Decision(region, True, "date")
    if _TIME.search(text):
        return Decision(region, True, "time")
    if _ID_LIKE.search(text):
        return Decision(region, True, "id_like")
    if _NAME_LIKE.search(text):
        return Decision(region, True, "name_like")
    if not all(_token_is_safe(token) for token in _TOKEN_SPLIT.split(text)):
        return Decision(region, True, "unknown_word")
    return Decision(region, False, "safe_text")


def decide(
    regions: Sequence[TextRegion],
    policy: Policy | str = Policy.ALL,
    *,
    terms: Iterable[str] = (),
    min_confidence: float = 0.8,
) -> list[Decision]:
    """Decide, region by region, what to black out.

    Parameters
    ----------
    regions : sequence of TextRegion
        Text OCR found in one frame.
    policy : Policy or str, optional
        ``all`` (black out every region) or ``phi`` (keep text that identifies nobody).
    terms : iterable of str, optional
        Identifying values captured from the instance's header before de-identification.
    min_confidence : float, optional
        Under ``phi``, regions read with less confidence are redacted unread.

    Returns
    -------
    list of Decision
        One per region, in order.
    """
    policy = Policy(policy)
    term_list = [t for t in terms if len(_normalise(t)) >= 3]
    decisions = []
    for region in regions:
        if is_lone_mark(region):
            decisions.append(Decision(region, False, "lone_mark"))
        elif policy is Policy.ALL:
            decisions.append(Decision(region, True, "policy_all"))
        else:
            decisions.append(_judge(region, term_list, min_confidence))
    return decisions


#: A box read as at most one character and no wider than this share of its height holds one
#: glyph; a box narrower than the second share of its height, read as at most two characters,
#: is a stroke. Either way it is a mark (a laterality letter, a focus circle, a caliper end, the
#: edge of a black box on a busy picture), not text that can identify anyone: PHI takes more
#: characters, and header values shorter than three characters are never matched.
_ONE_GLYPH_WIDTH: Final = 1.2
_SLIVER_WIDTH: Final = 0.4


def is_lone_mark(region: TextRegion) -> bool:
    """Tell whether a region is a lone mark (one glyph or a stroke), kept under every policy.

    A line the recogniser cannot read still counts as text when it is wider than one glyph, and
    rotated text reads as several characters, so neither is a lone mark.

    Parameters
    ----------
    region : TextRegion
        A region OCR found.

    Returns
    -------
    bool
        True for at most one character in a box one glyph wide, or at most two characters in a
        sliver.
    """
    characters = sum(c.isalnum() for c in region.text)
    if characters <= 1 and region.width <= _ONE_GLYPH_WIDTH * region.height:
        return True
    return characters <= 2 and region.width <= _SLIVER_WIDTH * region.height


#: Words on one line closer than this many line heights merge into one box; the strip of
#: background left between two nearby boxes is narrow and tall enough to read as a glyph.
_WORD_GAP: Final = 1.5


def _same_line(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap = min(ay + ah, by + bh) - max(ay, by)
    if overlap < 0.5 * min(ah, bh):
        return False
    gap = max(bx - (ax + aw), ax - (bx + bw))
    return gap <= _WORD_GAP * max(ah, bh)


def _merge_lines(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _same_line(boxes[i], boxes[j]):
                    boxes[i] = _union(boxes[i], boxes[j])
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def redaction_boxes(
    regions: Iterable[TextRegion],
    rows: int,
    columns: int,
    *,
    margin: float = 0.25,
    min_margin: int = 2,
) -> list[tuple[int, int, int, int]]:
    """Paint boxes for regions to redact: lines merged, grown by a margin, clipped to the frame.

    Parameters
    ----------
    regions : iterable of TextRegion
        Regions to black out (one frame's).
    rows, columns : int
        Frame size.
    margin : float, optional
        Margin on every side as a share of the line height.
    min_margin : int, optional
        Least margin in pixels.

    Returns
    -------
    list of tuple of int
        ``(x, y, width, height)`` per box (the pipeline makes them
        :class:`scrubber.redact.Box` objects for the frames they apply to).
    """
    boxes = _merge_lines([r.box for r in regions if r.width > 0 and r.height > 0])
    out: list[tuple[int, int, int, int]] = []
    for x, y, w, h in boxes:
        pad = max(min_margin, round(margin * min(w, h)))
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(columns, x + w + pad), min(rows, y + h + pad)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1 - x0, y1 - y0))
    return _merge_lines(out)  # grown boxes that now sit side by side close their gaps
