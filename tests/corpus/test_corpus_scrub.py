"""The one-instance pipeline on real files: text gone, clean images untouched, broken ones held.

A representative subset keeps the suite's time in bounds: one file of every distinct burned-in
image (ultrasound banners in grey, RGB, palette and YBR, a 2-frame and a 27-frame cine, endoscopy,
a scanned film, a CR with TCIA-style PHI, a CT with rotated text), a spread of text-free images
(CT, MR, CR, DX, MG, XA, NM, PT, photos, test patterns) and every file pydicom cannot decode.
``benchmarks/scrub_corpus.py`` runs the same checks on the whole corpus.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydicom.dataset import Dataset

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.detect import TextClassifier, load_classifier
from scrubber.detect.ocr import OcrEngine, load_engine
from scrubber.dicom_io import read_instance
from scrubber.dicom_io.pixels import iter_frames
from scrubber.errors import ScrubberError
from scrubber.pipeline import InstanceResult, Outcome, QuarantineReason, scrub_instance
from tests.conftest import CORPUS, SECRET, require_shared
from tests.legibility import have_tesseract, leaked_tokens, presidio_coverage

PHI_FILES = [
    "deid/ultrasounds/GREYSCALE_CINE.dcm",
    "deid/ultrasounds/GREYSCALE_IMAGE.dcm",
    "deid/ultrasounds/RGB_IMAGE.dcm",
    "fo-dicom/CT-MONO2-16-ankle",
    "mithp-dicom-redactor/own-test-001.dcm",
    "orthanc-tests/Issue19.dcm",
    "presidio/0_ORIGINAL_compressed.dcm",
    "pydicom-data/OBXXXX1A_2frame.dcm",
    "pydicom-data/US1_J2KR.dcm",
    "pydicom-data/gdcm-US-ALOKA-16.dcm",
    "pydicom/examples_palette.dcm",
    "pydicom/examples_rgb_color.dcm",
    "wg04-nema/SC1_JLSL",
    "wg04-nema/VL1_RLE",
    "wg04-nema/VL6_J2KI",
]
NONE_FILES = [
    "wg04-nema/CT1_RLE",
    "wg04-nema/MR1_JLSL",
    "wg04-nema/RG2_JPLL",
    "wg04-nema/XA1_RLE",
    "pydicom/MR_small.dcm",
    "pydicom/CT_small.dcm",
    "pydicom-data/emri_small_RLE.dcm",
    "fo-dicom/GH133.dcm",
    "fo-dicom/GH610.dcm",
    "fo-dicom/TestPattern_RGB.dcm",
    "orthanc-tests/Encodings_Lena-utf8.dcm",
    "pydicom-data/color-px.dcm",
    "dwv/leadtools-8BitsJpegLossyGrayScale.dcm",
    "deid/humans/ctbrain1.dcm",
]
ALLOWED_PHI_QUARANTINE = {QuarantineReason.UNCERTAIN_SCORE, QuarantineReason.VERIFICATION_FAILED}
#: Text-free images the pipeline does not yet release untouched, with why (issue 5 allows 2% of
#: exceptions, listed with reasons; this list must shrink, never silently grow).
#: (Classifier 2.0.0 held emri_small_RLE, a noisy 64 x 64 MR crop, as uncertain_score; 2.2.0
#: scores it 0.78, under high, and releases it untouched.)
KNOWN_NONE_EXCEPTIONS: dict[str, str] = {}


@pytest.fixture(scope="module")
def labels() -> dict[str, Any]:
    path = require_shared(CORPUS / "labels.json", "The real-world corpus")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def models() -> tuple[TextClassifier, OcrEngine]:
    return load_classifier(threads=2), load_engine("rapidocr", threads=2)


def _scrub(rel: str, models: tuple[TextClassifier, OcrEngine]) -> tuple[Dataset, InstanceResult]:
    ds = read_instance(CORPUS / "files" / rel)
    deidentifier = Deidentifier(DeidConfig(project="CORPUS"), SECRET, None)
    classifier, engine = models
    return ds, scrub_instance(ds, classifier=classifier, engine=engine, deidentifier=deidentifier)


@pytest.fixture(scope="module")
def phi_results(
    labels: dict[str, Any], models: tuple[TextClassifier, OcrEngine]
) -> dict[str, tuple[InstanceResult, int]]:
    """Per phi file: the result and how many of its tokens are still legible."""
    results = {}
    for rel in PHI_FILES:
        assert labels[rel]["burned_in"] == "phi", rel
        _ds, result = _scrub(rel, models)
        legible = 0
        if result.dataset is not None:
            legible = leaked_tokens(
                result.dataset, labels[rel]["phi_tokens"], models[1], have_tesseract()
            )
        results[rel] = (result, legible)
    return results


def test_no_phi_token_is_legible_in_any_released_output(
    phi_results: dict[str, tuple[InstanceResult, int]],
) -> None:
    leaks = {rel: n for rel, (result, n) in phi_results.items() if result.released and n}
    assert leaks == {}


def test_phi_images_are_scrubbed_not_merely_passed(
    phi_results: dict[str, tuple[InstanceResult, int]],
) -> None:
    for rel, (result, _) in phi_results.items():
        if result.released:
            assert result.outcome is Outcome.SCRUBBED and result.redacted_regions > 0, rel
        else:
            assert result.reason in ALLOWED_PHI_QUARANTINE, (rel, result.reason)


def test_at_most_one_in_ten_phi_files_is_quarantined(
    phi_results: dict[str, tuple[InstanceResult, int]],
) -> None:
    held = [rel for rel, (result, _) in phi_results.items() if not result.released]
    assert len(held) <= 0.1 * len(phi_results), held


def test_presidio_ground_truth_boxes_are_covered(
    phi_results: dict[str, tuple[InstanceResult, int]],
) -> None:
    result, _ = phi_results["presidio/0_ORIGINAL_compressed.dcm"]
    assert result.dataset is not None, result.message
    shares = presidio_coverage(result.dataset, CORPUS)
    assert len(shares) >= 5 and min(shares) >= 0.95, shares


def test_text_free_images_keep_their_pixel_data_and_are_released(
    labels: dict[str, Any], models: tuple[TextClassifier, OcrEngine]
) -> None:
    exceptions = {}
    for rel in NONE_FILES:
        assert labels[rel]["burned_in"] == "none"
        original = read_instance(CORPUS / "files" / rel)
        ds, result = _scrub(rel, models)
        if result.outcome is not Outcome.CLEAN:
            exceptions[rel] = result.reason.value if result.reason else result.outcome.value
        else:
            assert bytes(ds.PixelData) == bytes(original.PixelData), rel
    assert exceptions == KNOWN_NONE_EXCEPTIONS


def test_every_undecodable_file_is_quarantined_with_a_reason(
    labels: dict[str, Any], models: tuple[TextClassifier, OcrEngine]
) -> None:
    broken = [
        rel
        for rel, label in labels.items()
        if label["decodes_with_pydicom_pylibjpeg"] is False and label["burned_in"] != "n/a"
    ]
    assert len(broken) >= 15
    released = []
    for rel in broken:
        try:
            _ds, result = _scrub(rel, models)
        except ScrubberError:  # refused at read: the job quarantines it as unreadable
            continue
        if result.released:
            released.append(rel)
        else:
            assert result.reason is not None and result.message
    # labels can be wrong (see the corpus README): a file they call undecodable that decodes
    # cleanly and scrubs like any other is acceptable only when it really decoded
    for rel in released:
        ds = read_instance(CORPUS / "files" / rel)
        assert sum(1 for _ in iter_frames(ds)) >= 1, rel
