"""How one answer is checked against a de-identified instance: the rules of the MIDI scorer.

Text is compared the way the MIDI validation script does: case-insensitive, a text is retained
when it appears whole in the element (or every one of its words does), removed when none of its
words does (stop words and punctuation do not count). Pixel text is hidden when OCR of the answer
box finds none of its words, fuzzily (OCR drops and confuses characters): :func:`token_legible`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CheckResult",
    "box_view",
    "text_removed",
    "text_retained",
    "token_legible",
    "values_digest",
    "words",
]

_STOP_WORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "to",
        "was",
        "were",
        "will",
        "with",
        "after",
        "before",
        "prefers",
    )
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, and a score in [0, 1] (the share of words that did)."""

    passed: bool
    score: float


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("^", " ")).strip().lower()


def words(text: str) -> list[str]:
    """Return the words of ``text`` that a check counts (no stop words, no punctuation).

    Parameters
    ----------
    text : str
        An answer's text.

    Returns
    -------
    list of str
        Lower-case words, in order, without repeats.
    """
    found: list[str] = []
    for word in re.findall(r"[0-9a-z\u00c0-\u024f]+", _normal(text)):
        if word not in _STOP_WORDS and word not in found:
            found.append(word)
    return found


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def text_retained(file_value: str, answer: str) -> CheckResult:
    """Whether the answer's text survives in the element's value.

    Parameters
    ----------
    file_value : str
        The de-identified element's value as text ('' when absent).
    answer : str
        The text that must survive.

    Returns
    -------
    CheckResult
    """
    value, expected = _normal(file_value), _normal(answer)
    if not value:
        return CheckResult(False, 0.0)
    a, b = _number(value), _number(expected)
    if a is not None and b is not None:
        return CheckResult(a == b, 1.0 if a == b else 0.0)
    if expected in value:
        return CheckResult(True, 1.0)
    wanted = words(expected)
    if not wanted:
        return CheckResult(True, 1.0)
    kept = sum(1 for w in wanted if w in value)
    return CheckResult(kept == len(wanted), kept / len(wanted))


def text_removed(file_value: str, answer: str) -> CheckResult:
    """Whether none of the answer's words survives in the element's value.

    Short answers (one or two characters, such as a sex code) must not be the whole value;
    longer ones are checked word by word, each as a substring of the value.

    Parameters
    ----------
    file_value : str
        The de-identified element's value as text ('' when absent).
    answer : str
        The identifying text.

    Returns
    -------
    CheckResult
    """
    value, expected = _normal(file_value), _normal(answer)
    if not value or not expected:
        return CheckResult(True, 1.0)
    if len(expected) <= 2:
        gone = value != expected
        return CheckResult(gone, 1.0 if gone else 0.0)
    a, b = _number(value), _number(expected)
    if a is not None and b is not None:
        return CheckResult(a != b, 1.0 if a != b else 0.0)
    if expected in value:
        return CheckResult(False, 0.0)
    wanted = [w for w in words(expected) if len(w) > 1] or words(expected)
    if not wanted:
        return CheckResult(True, 1.0)
    gone_count = sum(1 for w in wanted if w not in value)
    return CheckResult(gone_count == len(wanted), gone_count / len(wanted))


def _flat(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def token_legible(token: str, texts: Iterable[str]) -> bool:
    """Whether ``token`` can be read in any of ``texts`` (OCR readings), fuzzily.

    Case, spaces and punctuation are ignored. Tokens of four or more characters also match at
    85% partial similarity when the reading is about as long as the token (a partial ratio aligns
    the shorter string inside the longer, so a lone ``1`` would otherwise match every token that
    contains one).

    Parameters
    ----------
    token : str
        A word that must not be legible.
    texts : iterable of str
        What OCR read.

    Returns
    -------
    bool
    """
    from rapidfuzz import fuzz

    key = _flat(token)
    if not key:
        return False
    for text in texts:
        flat = _flat(text)
        if key in flat:
            return True
        if len(key) >= 4 and len(flat) >= len(key) - 1 and fuzz.partial_ratio(key, flat) >= 85:
            return True
    return False


def box_view(view: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Return the part of a rendered frame around a box, framed for OCR.

    The box is cut out with a margin of half its height and set on a black border of twice its
    height: a text detector drops a line that fills its whole input, so a tight crop reads as
    nothing even when the text is plain.

    Parameters
    ----------
    view : numpy.ndarray
        A rendered frame (8-bit greyscale or RGB).
    box : tuple of int
        ``(x, y, width, height)``.

    Returns
    -------
    numpy.ndarray
        The framed crop.
    """
    import cv2

    x, y, w, h = box
    rows, columns = view.shape[:2]
    margin = max(4, h // 2)
    crop = view[
        max(0, y - margin) : min(rows, y + h + margin),
        max(0, x - margin) : min(columns, x + w + margin),
    ]
    border = max(20, 2 * h)
    return np.asarray(
        cv2.copyMakeBorder(crop, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
    )


def values_digest(frame: np.ndarray) -> str:
    """Return the SHA-256 digest of one decoded frame's values (shape, type and values).

    Parameters
    ----------
    frame : numpy.ndarray
        A frame as :func:`~scrubber.dicom_io.pixels.iter_frames` gives it.

    Returns
    -------
    str
        A hex digest that changes when any value, the shape or the sample type changes, and not
        when only the encoding (transfer syntax, byte order) does.
    """
    canonical = np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("<"))
    digest = hashlib.sha256(f"{canonical.dtype.str}{canonical.shape}".encode())
    digest.update(canonical.tobytes())
    return digest.hexdigest()
