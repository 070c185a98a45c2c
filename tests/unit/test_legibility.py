"""The legibility check that the corpus tests and benchmark judge scrubbed outputs with."""

from __future__ import annotations

import pytest

from tests.legibility import legible


@pytest.mark.parametrize(
    ("token", "texts", "expected"),
    [
        ("08/20/31", ["DOB 08-20-31"], True),  # punctuation and case ignored
        ("JOHNATHAN DOE", ["J0HNATHAN DOE"], True),  # one OCR error in twelve characters
        ("DOE^JOHN", ["doe john"], True),
        ("9261", ["-1"], False),  # a lone stroke is not the ID
        ("08/20/31", ["1", "31"], False),  # fragments shorter than the token
        ("9261", ["SCV------1"], False),
        ("M", ["MR"], True),  # short tokens must appear exactly
        ("M", ["R"], False),
    ],
)
def test_a_token_counts_as_legible_only_when_a_reading_can_hold_it(
    token: str, texts: list[str], expected: bool
) -> None:
    assert legible(token, texts) is expected
