"""The PHI decision: policies, header matching, patterns, allow-list, and paint boxes."""

from __future__ import annotations

import pytest

from scrubber.deid.terms import HeaderTerms
from scrubber.detect.decide import Policy, decide, header_match, redaction_boxes
from scrubber.detect.ocr import TextRegion


def _region(text: str, confidence: float = 0.95, x: int = 10, y: int = 10) -> TextRegion:
    return TextRegion(x, y, 8 * max(1, len(text)), 12, text, confidence)


def _terms() -> list[str]:
    terms = HeaderTerms()
    terms.add("DOE^JOHN^Q")
    terms.add("4417302")
    terms.add("ST. ELSEWHERE GENERAL")
    terms.add_date("19610312")
    return sorted(terms.terms())


def test_policy_all_blacks_out_everything_even_safe_markers() -> None:
    unreadable_line = TextRegion(10, 10, 90, 12, "L", 0.3)  # one character read in a wide box
    regions = [_region("RT"), _region("5 cm"), _region("DOE JOHN"), unreadable_line]
    decisions = decide(regions, "all")
    assert all(d.redact and d.reason == "policy_all" for d in decisions)


@pytest.mark.parametrize("policy", [Policy.ALL, Policy.PHI])
@pytest.mark.parametrize(
    "region",
    [
        TextRegion(10, 10, 9, 12, "L", 0.99),  # a laterality letter
        TextRegion(10, 10, 30, 32, "o", 0.76),  # a focus circle
        TextRegion(10, 10, 8, 10, "", 0.9),  # a glyph-sized blob nobody can read
        TextRegion(10, 10, 5, 40, "11", 0.8),  # the edge of a black box on a busy picture
    ],
)
def test_lone_marks_identify_nobody_under_either_policy(policy: Policy, region: TextRegion) -> None:
    decision = decide([region], policy, terms=_terms())[0]
    assert not decision.redact and decision.reason == "lone_mark"


@pytest.mark.parametrize(
    "region",
    [
        TextRegion(10, 10, 20, 12, "95", 0.9),  # two characters side by side
        TextRegion(10, 10, 12, 60, "DOE", 0.9),  # rotated text: tall, narrow, several characters
        TextRegion(10, 10, 40, 12, "7", 0.9),  # one character read in a box for several
    ],
)
def test_more_than_one_glyph_is_not_a_lone_mark(region: TextRegion) -> None:
    assert decide([region], Policy.ALL)[0].redact


@pytest.mark.parametrize(
    "text",
    ["Doe, John", "JOHN DOE", "DOE^JOHN", "Jon Doe", "ID: 4417302", "MRN 441 7302", "St Elsewhere"],
)
def test_header_values_are_found_in_any_order_spelling_and_separator(text: str) -> None:
    assert header_match(text, _terms())
    decision = decide([_region(text)], Policy.PHI, terms=_terms())[0]
    assert decision.redact


@pytest.mark.parametrize("text", ["1961-03-12", "12/03/1961", "03/12/1961", "12.03.1961"])
def test_the_birth_date_is_matched_in_every_common_spelling(text: str) -> None:
    assert header_match(text, _terms())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("04-SEP-2007", "date"),
        ("2007/09/04", "date"),
        ("12 Mar 1961", "date"),
        ("20:42:11", "time"),
        ("Acc 88812345", "id_like"),
        ("Smith, Anna", "name_like"),
        ("MILLER^ROSE", "name_like"),
        ("Kidney Clinic", "unknown_word"),
    ],
)
def test_identifying_patterns_are_redacted_without_header_help(text: str, reason: str) -> None:
    decision = decide([_region(text)], Policy.PHI)[0]
    assert decision.redact and decision.reason == reason


@pytest.mark.parametrize(
    "text",
    ["RT", "AP", "SAG", "5 cm", "3.5MHz", "Gain 60%", "WL 40 WW 400", "TIS 0.4", "x1.5"],
)
def test_text_that_identifies_nobody_is_kept_under_policy_phi(text: str) -> None:
    decision = decide([_region(text)], Policy.PHI, terms=_terms())[0]
    assert not decision.redact and decision.reason == "safe_text"


def test_unsure_reads_are_redacted() -> None:
    low = decide([_region("RT", confidence=0.4)], Policy.PHI)[0]
    empty = decide([TextRegion(10, 10, 60, 12, "", 0.99)], Policy.PHI)[0]
    assert low.redact and low.reason == "unreadable"
    assert empty.redact and empty.reason == "unreadable"


def test_decisions_carry_no_text() -> None:
    decision = decide([_region("DOE JOHN")], Policy.PHI, terms=_terms())[0]
    assert "DOE" not in repr(decision)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        decide([], "bogus")


def test_words_of_one_line_merge_into_one_box_with_a_margin() -> None:
    words = [
        TextRegion(10, 20, 40, 12, "DOE", 0.9),
        TextRegion(56, 21, 50, 11, "JOHN", 0.9),
        TextRegion(10, 60, 40, 12, "MRN", 0.9),  # next line: separate
    ]
    boxes = redaction_boxes(words, 200, 300)
    assert len(boxes) == 2
    (x, y, w, h), (_, y2, _, _) = sorted(boxes, key=lambda b: b[1])
    assert x < 10 and y < 20 and x + w > 106 and y + h > 32  # both words and a margin
    assert y2 < 60 < y2 + 20


def test_boxes_are_clipped_to_the_frame() -> None:
    boxes = redaction_boxes([TextRegion(0, 0, 50, 10, "X", 0.9)], 100, 40)
    assert boxes == [(0, 0, 40, 12)]  # 2 px margin below, none outside the frame


def test_distant_words_on_one_row_stay_separate() -> None:
    boxes = redaction_boxes(
        [TextRegion(10, 10, 40, 12, "A", 0.9), TextRegion(400, 10, 40, 12, "B", 0.9)], 100, 500
    )
    assert len(boxes) == 2
