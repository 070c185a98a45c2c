"""The scorer's rules for one check: text kept or removed, OCR tokens legible, the key's format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scrubber.validate.answer_key import Answer, AnswerKey, InstanceAnswers
from scrubber.validate.score import (
    box_view,
    text_removed,
    text_retained,
    token_legible,
    values_digest,
    words,
)


def test_words_drop_stop_words_punctuation_and_repeats() -> None:
    assert words("Seen by SMITH^JOHN at the 12 Elm Street, Bergen; Smith") == [
        "seen",
        "smith",
        "john",
        "12",
        "elm",
        "street",
        "bergen",
    ]


@pytest.mark.parametrize(
    ("value", "answer", "passed", "score"),
    [
        ("", "HALVORSEN INGRID", True, 1.0),  # gone
        ("VALID_001", "HALVORSEN INGRID", True, 1.0),  # replaced by a pseudonym
        ("HALVORSEN^INGRID", "HALVORSEN INGRID", False, 0.0),  # kept whole
        ("CT CHEST FOR INGRID", "HALVORSEN INGRID", False, 0.5),  # one word of two survives
        ("M", "M", False, 0.0),  # a short code kept
        ("", "M", True, 1.0),
        ("MALE", "M", True, 1.0),  # a short answer must not match inside a longer word
        ("19570314", "19570314", False, 0.0),
        ("19570315", "19570314", True, 1.0),
    ],
)
def test_text_removed(value: str, answer: str, passed: bool, score: float) -> None:
    result = text_removed(value, answer)
    assert (result.passed, result.score) == (passed, score)


@pytest.mark.parametrize(
    ("value", "answer", "passed"),
    [
        ("CT", "CT", True),
        ("", "CT", False),
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2", True),
        ("12.0", "12", True),  # numbers compare as numbers
        ("CHEST ABDOMEN", "abdomen chest", True),  # every word kept, in any order
        ("CHEST", "chest abdomen", False),
    ],
)
def test_text_retained(value: str, answer: str, passed: bool) -> None:
    assert text_retained(value, answer).passed is passed


def test_tokens_are_legible_fuzzily_but_not_from_a_lone_glyph() -> None:
    assert token_legible("HALVORSEN", ["HALV0RSEN, INGRID"])  # one confusion
    assert token_legible("14.03.1957", ["DOB 14031957"])  # punctuation ignored
    assert not token_legible("HALVORSEN", ["HAL"])
    assert not token_legible("18470054", ["1"])  # a lone 1 left by the black box's edge
    assert not token_legible("", ["anything"])


def test_box_view_frames_the_box_on_a_black_border() -> None:
    view = np.full((100, 200), 128, np.uint8)
    framed = box_view(view, (50, 40, 60, 10))
    margin, border = 5, 20
    assert framed.shape == (10 + 2 * margin + 2 * border, 60 + 2 * margin + 2 * border)
    assert framed[0, 0] == 0 and framed[border + 1, border + 1] == 128


def test_values_digest_sees_values_not_encoding() -> None:
    frame = np.arange(12, dtype="<u2").reshape(3, 4)
    assert values_digest(frame) == values_digest(frame.astype(">u2"))
    changed = frame.copy()
    changed[0, 0] += 1
    assert values_digest(changed) != values_digest(frame)
    assert values_digest(frame.astype(np.uint8)) != values_digest(frame)


def test_the_key_round_trips_through_sqlite_and_json_in_the_midi_format(tmp_path: Path) -> None:
    answers = [
        Answer(
            "text_removed",
            "(0010,0010)",
            "(0010,0010)",
            "Patient's Name",
            "A^B",
            "A B",
            category="patient",
        ),
        Answer(
            "pixels_hidden",
            "(7FE0,0010)",
            "(7FE0,0010)",
            "Pixel Data",
            "A B",
            "A B",
            0,
            (1, 2, 3, 4),
            "pixels",
        ),
    ]
    instance = InstanceAnswers(
        "1.2.3", "1.2.4", "1.2.5", "PID", "US", "P1/IM1.dcm", 1, True, answers
    )
    key = AnswerKey([instance], {"seed": "4"})
    key.write(tmp_path / "k.sqlite", tmp_path / "k.json")
    for name in ("k.sqlite", "k.json"):
        back = AnswerKey.read(tmp_path / name)
        assert back.meta["seed"] == "4"
        assert back.instances[0].answers == answers
        assert back.instances[0].file_path == "P1/IM1.dcm"
    document = json.loads((tmp_path / "k.json").read_text())
    entry = document["answer_data"][0]["AnswerData"]["0"]
    assert entry["action"] == "<text_removed>" and entry["tag"] == "<(0010,0010)>"
    with pytest.raises(ValueError, match="Unknown action"):
        Answer("pixels_blurred", "", "", "")
