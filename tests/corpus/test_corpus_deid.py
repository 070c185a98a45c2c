"""De-identification over the real-world corpus in ../shared/corpus (never copied here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.errors import NotDicomError, ScrubberError
from scrubber.runner import deidentify_file
from tests.conftest import CORPUS, SECRET, require_shared
from tests.phi_scan import identifying_values, leaks, read

HEADER_PHI = (
    "presidio/*.dcm",
    "deid/humans/*",
    "deid/dicom-cookies/*",
    "dwv/dwv-test-anonymise.dcm",
    "orthanc-tests/Encodings_*",
    "fo-dicom/charset/*",
)


@dataclass
class Outcome:
    source: Path
    output: Path | None
    error: ScrubberError | None


@pytest.fixture(scope="session")
def corpus_files() -> Path:
    return require_shared(CORPUS / "files", "The real-world corpus")


@pytest.fixture(scope="session")
def outcomes(corpus_files: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    out = tmp_path_factory.mktemp("corpus-out")
    deid = Deidentifier(DeidConfig(project="CORPUS"), SECRET, None)
    results: dict[str, Outcome] = {}
    for path in sorted(p for p in corpus_files.rglob("*") if p.is_file()):
        rel = path.relative_to(corpus_files).as_posix()
        try:
            deidentify_file(deid, path, out / rel)
        except ScrubberError as exc:
            results[rel] = Outcome(path, None, exc)
        else:
            results[rel] = Outcome(path, out / rel, None)
    return results


def test_every_file_ends_in_an_output_or_a_typed_error(outcomes: dict[str, Outcome]) -> None:
    labels = json.loads((CORPUS / "labels.json").read_text(encoding="utf-8"))
    assert len(outcomes) >= 400
    done = [rel for rel, o in outcomes.items() if o.output is not None]
    assert len(done) >= 0.95 * len(labels)
    for rel in labels:
        outcome = outcomes[rel]
        assert outcome.output is not None or outcome.error is not None
        if outcome.error is not None:
            assert outcome.error.reason in (
                "not_dicom",
                "unreadable",
                "unsupported_content",
                "dicomdir",
            )
    for rel, outcome in outcomes.items():
        if rel not in labels:  # licences, readmes, ground truth JSON
            assert isinstance(outcome.error, NotDicomError)


def _header_phi_files(corpus_files: Path) -> list[str]:
    found = {
        p.relative_to(corpus_files).as_posix()
        for pattern in HEADER_PHI
        for p in corpus_files.glob(pattern)
        if p.is_file() and p.suffix.lower() not in (".json", ".txt", ".md") and p.name != "LICENSE"
    }
    return sorted(found)


def test_no_original_identifier_survives_in_header_phi_files(
    outcomes: dict[str, Outcome], corpus_files: Path
) -> None:
    files = _header_phi_files(corpus_files)
    assert len(files) >= 30
    searched = 0
    for rel in files:
        outcome = outcomes[rel]
        assert outcome.output is not None, f"{rel}: {outcome.error}"
        original = read(outcome.source)
        tokens = identifying_values(original)
        searched += len(tokens)
        # The scan must be able to see the originals: it finds them in the input itself.
        if tokens:
            assert leaks(original, outcome.source), rel
        assert leaks(original, outcome.output) == [], rel
    assert searched > 300


def test_pixel_data_is_byte_identical_in_every_output(outcomes: dict[str, Outcome]) -> None:
    compared = 0
    for rel, outcome in outcomes.items():
        if outcome.output is None:
            continue
        before = read(outcome.source).get("PixelData")
        after = pydicom.dcmread(outcome.output, force=True).get("PixelData")
        assert (before is None) == (after is None), rel
        if before is not None:
            # An odd-length value (fo-dicom/GH364.dcm) may gain the one padding byte DICOM
            # requires when pydicom re-encodes it; nothing else may change.
            assert after in (before, before + b"\x00" * (len(before) % 2)), rel
            compared += 1
    assert compared >= 300


def test_outputs_are_marked_and_pseudonymised(outcomes: dict[str, Outcome]) -> None:
    for rel, outcome in outcomes.items():
        if outcome.output is None:
            continue
        ds = pydicom.dcmread(outcome.output, force=True)
        assert ds.PatientIdentityRemoved == "YES", rel
        assert str(ds.PatientID).startswith("CORPUS_"), rel
        assert "113100" in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence], rel
