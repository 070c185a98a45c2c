"""Keyed UIDs, date shifting and header-term cleaning."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrubber.deid.dates import DateShifter, UnparsableDateError, shift_days_from_secret
from scrubber.deid.terms import HeaderTerms
from scrubber.deid.uids import UIDRemapper

UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


@given(st.text(alphabet="0123456789.", min_size=1, max_size=64).filter(lambda s: s.strip(".")))
def test_remapped_uids_are_valid_deterministic_and_keyed(uid: str) -> None:
    first, again = UIDRemapper(b"a" * 32), UIDRemapper(b"a" * 32)
    other = UIDRemapper(b"b" * 32)
    new = first(uid)
    if uid.startswith("1.2.840.10008."):
        assert new == uid
        return
    assert UID_RE.match(new)
    assert len(new) <= 64
    assert new == again(uid)
    assert new != other(uid)


def test_well_known_uids_and_padding() -> None:
    remap = UIDRemapper(b"a" * 32)
    assert remap("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert remap("1.2.3.4\x00") == remap("1.2.3.4")
    assert remap("1.2.3.4") != remap("1.2.3.5")


def test_date_shift_keeps_precision_ranges_and_offsets() -> None:
    shift = DateShifter(-10)
    assert shift.shift_da("20200105") == "20191226"
    assert shift.shift_da("20200105-20200110") == "20191226-20191231"
    assert shift.shift_da("2020.01.05") == "20191226"
    assert shift.shift_dt("20200105123000.123+0100") == "20191226123000.123+0100"
    assert shift.shift_dt("20200105120000-0500") == "20191226120000-0500"
    assert shift.shift_dt("202001") == "201912"
    assert shift.shift_dt("20200105-20200106") == "20191226-20191227"
    for bad in ("", "2020013", "20201340", "hello", "19999999"):
        with pytest.raises(UnparsableDateError):
            shift.shift_da(bad)


def test_shift_from_secret_is_stable_negative_and_keyed() -> None:
    days = shift_days_from_secret(b"a" * 32)
    assert days == shift_days_from_secret(b"a" * 32)
    assert -3 * 365 <= days <= -365
    assert shift_days_from_secret(b"a" * 32, "patient/1") != shift_days_from_secret(
        b"a" * 32, "patient/2"
    )


@given(st.integers(min_value=-5000, max_value=5000))
def test_intervals_survive_a_shift(days: int) -> None:
    import datetime as dt

    shift = DateShifter(days)
    a, b = "20100101", "20120615"
    new_a, new_b = shift.shift_da(a), shift.shift_da(b)

    def parse(v: str) -> dt.date:
        return dt.date(int(v[:4]), int(v[4:6]), int(v[6:]))

    assert parse(new_b) - parse(new_a) == parse(b) - parse(a)


def test_terms_clean_names_ids_and_date_spellings() -> None:
    terms = HeaderTerms()
    terms.add("DOE^JOHN^Q")
    terms.add("MRN12345")
    terms.add("AB")  # too short to be matched safely
    terms.add_date("19700215")
    text = "CT head John Doe MRN12345 born 15.02.1970 (1970-02-15) ABDOMEN"
    cleaned = terms.clean(text)
    for secret in ("John", "Doe", "MRN12345", "15.02.1970", "1970-02-15"):
        assert secret not in cleaned
    assert cleaned.startswith("CT head")
    assert "ABDOMEN" in cleaned  # no partial-word matches
    assert "DOE" in terms and len(terms) >= 5


@pytest.mark.parametrize("value", ["2020010²", "٢٠٢٠٠١٠١", "20²00101"])
def test_dates_with_digits_that_are_not_ascii_are_unparsable_not_a_crash(value: str) -> None:
    # str.isdigit() accepts superscripts and other scripts' digits; int() does not take them all

    with pytest.raises(UnparsableDateError):
        DateShifter(-10).shift_da(value)
