"""Identifying terms captured from a header before it is de-identified.

The values the profile removes (names, IDs, birth dates, accession numbers, institutions, addresses,
dates) are collected first. Free text that a *Clean* option keeps (descriptions, structured content)
is then cleaned of every captured term, and the same terms later tell the pixel stage which OCR text
is PHI. The terms stay in memory only: they are never logged, stored or returned in a report.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

__all__ = ["HeaderTerms", "capture_terms", "date_spellings", "element_vr"]

MIN_TERM_LENGTH = 3
REDACTED_MARK = "*"

# Attributes whose values name or identify the patient or the people and places around them.
IDENTIFYING_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "OtherPatientIDs",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "IssuerOfPatientID",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientBirthDate",
        "AccessionNumber",
        "StudyID",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "ReferringPhysicianName",
        "ReferringPhysicianAddress",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "OperatorsName",
        "RequestingPhysician",
        "ScheduledPerformingPhysicianName",
        "MedicalRecordLocator",
        "DeviceSerialNumber",
        "MilitaryRank",
        "BranchOfService",
        "RegionOfResidence",
        "CountryOfResidence",
    }
)


def date_spellings(value: str) -> set[str]:
    """Return the ways a DICOM date ``YYYYMMDD`` is commonly written in text.

    Parameters
    ----------
    value : str
        A DA value.

    Returns
    -------
    set of str
        The value itself plus ISO, European and US spellings; empty if ``value`` is no date.
    """
    value = value.strip()
    if len(value) != 8 or not (value.isascii() and value.isdigit()):
        return set()
    y, m, d = value[:4], value[4:6], value[6:]
    return {
        value,
        f"{y}-{m}-{d}",
        f"{y}/{m}/{d}",
        f"{y}.{m}.{d}",
        f"{d}.{m}.{y}",
        f"{d}/{m}/{y}",
        f"{m}/{d}/{y}",
        f"{d}-{m}-{y}",
        f"{m}-{d}-{y}",
    }


class HeaderTerms:
    """A set of identifying strings found in one header, and a cleaner built from them."""

    def __init__(self) -> None:
        self._terms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        """Add a value and its word-level parts.

        Person names are split on ``^``, ``=`` and spaces so that "DOE^JOHN" also catches "John
        Doe" in free text.

        Parameters
        ----------
        value : str
            The identifying value.
        """
        value = value.strip(" \x00")
        if len(value) < MIN_TERM_LENGTH:
            return
        self._pattern = None
        self._terms.add(value)
        for part in re.split(r"[\^=\s,]+", value):
            if len(part) >= MIN_TERM_LENGTH:
                self._terms.add(part)

    def add_date(self, value: str) -> None:
        """Add a date in all its common spellings.

        Parameters
        ----------
        value : str
            A DA value.
        """
        spellings = date_spellings(value)
        if spellings:
            self._pattern = None
            self._terms |= spellings

    def update(self, values: Iterable[str]) -> None:
        """Add several values.

        Parameters
        ----------
        values : iterable of str
            Identifying values.
        """
        for value in values:
            self.add(value)

    def __len__(self) -> int:
        return len(self._terms)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text in self._terms

    def terms(self) -> frozenset[str]:
        """Return the captured terms (handle with care: they are PHI).

        Returns
        -------
        frozenset of str
            Every captured term.
        """
        return frozenset(self._terms)

    def clean(self, text: str) -> str:
        """Replace every captured term in ``text`` (case-insensitive) with ``*``.

        Parameters
        ----------
        text : str
            Free text from a descriptor or structured content.

        Returns
        -------
        str
            The text with identifying terms masked.
        """
        if not self._terms or not text:
            return text
        if self._pattern is None:
            ordered = sorted(self._terms, key=len, reverse=True)
            alternatives = "|".join(re.escape(term) for term in ordered)
            self._pattern = re.compile(
                rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])", re.IGNORECASE
            )
        return self._pattern.sub(REDACTED_MARK, text)


_IDENTIFYING_NUMBERS = frozenset(int(tag_for_keyword(k) or 0) for k in IDENTIFYING_KEYWORDS) - {0}
_MAX_DEPTH = 8


def capture_terms(ds: Dataset) -> HeaderTerms:
    """Collect the identifying values of ``ds`` without changing it.

    The pixel stage needs them before the header is de-identified: every person name (PN), every
    date (DA) in all its spellings, and the values of :data:`IDENTIFYING_KEYWORDS`, in the data set
    and in its sequences. Private elements are skipped (their meaning is unknown).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance as read.

    Returns
    -------
    HeaderTerms
        The captured terms (PHI: keep in memory only).
    """
    terms = HeaderTerms()
    with warnings.catch_warnings():  # pydicom may warn about odd values, quoting them
        warnings.simplefilter("ignore")
        _capture(ds, terms, 0)
    return terms


def element_vr(tag: BaseTag, elem: DataElement | RawDataElement) -> str:
    """Return an element's VR: as encoded, else (implicit VR, ``UN``) from the dictionary.

    Works on raw elements, so callers can decide from the VR alone whether a value is worth
    converting (conversion is most of the cost of reading a header).

    Parameters
    ----------
    tag : pydicom.tag.BaseTag
        The element's tag.
    elem : DataElement or RawDataElement
        The element, converted or not.

    Returns
    -------
    str
        The VR, ``"UN"`` when neither the file nor the dictionary knows it.
    """
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return str(vr or "UN")


def _capture(ds: Dataset, terms: HeaderTerms, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    for tag in list(ds.keys()):
        if tag.group & 1 or tag.group in (0x0002, 0x7FE0, 0xFFFE):
            continue
        vr = element_vr(tag, ds.get_item(tag, keep_deferred=True))
        if vr not in ("PN", "DA", "SQ") and int(tag) not in _IDENTIFYING_NUMBERS:
            continue  # left raw: converting every value would cost more than the rest
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot convert is skipped here; deid removes it
            continue
        if vr == "SQ":
            for item in elem.value or ():
                if isinstance(item, Dataset):
                    _capture(item, terms, depth + 1)
            continue
        if vr not in ("PN", "DA") and int(tag) not in _IDENTIFYING_NUMBERS:
            continue
        value = elem.value
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        for item in values:
            if item is None or isinstance(item, bytes):
                continue
            if vr == "DA":
                terms.add_date(str(item))
            else:
                terms.add(str(item))
