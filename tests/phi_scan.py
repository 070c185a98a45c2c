"""Find original identifying values of an input anywhere in a de-identified output.

Shared by the corpus and integration tests: it collects identifying values from the original
(names, IDs, birth dates, accession numbers, institutions, addresses, instance UIDs) at every depth,
private blocks included, and looks for them in every value and in the raw bytes of the output.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from scrubber.deid.uids import is_well_known_uid

IDENTIFYING = {
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "StationName",
    "MedicalRecordLocator",
    "StudyID",
    "DeviceSerialNumber",
}

# Values that are not identifying whatever element carries them.
NEUTRAL = {"ANONYMOUS", "ANONYMIZED", "UNKNOWN", "NONE", "TEST", "PHANTOM", "NULL"}


def _values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    if isinstance(value, bytes):
        return []
    return [str(value)]


def walk(ds: Dataset) -> Iterator[tuple[str, str, str]]:
    """Yield ``(keyword, VR, value)`` for every string value at every depth."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from walk(item)
            continue
        if elem.tag == 0x7FE00010 or elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        for value in _values(elem.value):
            yield elem.keyword, elem.VR, value


def identifying_values(ds: Dataset) -> set[str]:
    """Return identifying values of ``ds`` worth searching for (at least 4 characters)."""
    found: set[str] = set()
    for keyword, vr, raw_value in walk(ds):
        value = raw_value.strip(" \x00")
        if vr == "UI":
            if (
                value
                and not is_well_known_uid(value)
                and keyword
                not in (
                    "SOPClassUID",
                    "ReferencedSOPClassUID",
                    "MediaStorageSOPClassUID",
                )
            ):
                found.add(value)
        elif keyword in IDENTIFYING or vr == "PN":
            for part in [value, *value.replace("^", " ").replace("=", " ").split()]:
                if len(part.strip()) >= 4 and part.strip().upper() not in NEUTRAL:
                    found.add(part.strip())
    return found


def read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def leaks(original: Dataset, output_path: Path) -> list[str]:
    """Return descriptions (tag keywords, not values) of original values found in the output."""
    tokens = identifying_values(original)
    out = read(output_path)
    problems = []
    for keyword, _vr, value in walk(out):
        for token in tokens:
            if token in value:
                problems.append(f"{keyword or 'private'} carries an original value")
    raw = output_path.read_bytes()
    pixel = out.get("PixelData")
    if pixel is not None and isinstance(pixel, bytes):
        raw = raw.replace(pixel, b"")
    for token in tokens:
        for encoding in ("ascii", "utf-8", "latin-1"):
            try:
                needle = token.encode(encoding)
            except UnicodeEncodeError:
                continue
            if len(needle) >= 6 and needle in raw:
                problems.append(f"raw bytes carry an original value of {len(needle)} bytes")
                break
    return sorted(set(problems))
