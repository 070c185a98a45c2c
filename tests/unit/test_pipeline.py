"""The one-instance pipeline: outcomes, quarantine reasons, and what reaches the output.

Most tests use a scripted OCR engine and pinned classifier scores, so each routing and
verification rule is exercised exactly; the tests marked ``slow`` run the real classifier and
RapidOCR on drawn text.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from scrubber.deid import Deidentifier
from scrubber.detect import TextClassifier, load_classifier
from scrubber.detect.ocr import TextRegion, load_engine, read_text
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.pipeline import Outcome, QuarantineReason, ScrubConfig, scrub_instance
from scrubber.render import render_frame
from scrubber.samples import build_image
from tests.burned_in import ultrasound_with_banner
from tests.pinned_scores import pin_scores


class _Scripted:
    """OCR stand-in: ``script(view)`` returns the regions for a frame; calls are counted."""

    name = "scripted"
    max_side = 4096

    def __init__(self, script: Callable[[np.ndarray], list[TextRegion]]) -> None:
        self.script = script
        self.calls = 0

    def read(self, view: np.ndarray) -> list[TextRegion]:
        self.calls += 1
        return self.script(view)


def _bright_regions(view: np.ndarray) -> list[TextRegion]:
    """'Read' every bright blob as a text line (what is blacked out disappears on re-read)."""
    grey = view if view.ndim == 2 else view.max(axis=2)
    mask = (grey > 200).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    return [
        TextRegion(int(x), int(y), int(w), int(h), "DOE JOHN", 0.99)
        for x, y, w, h, _ in stats[1:count]
    ]


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    return load_classifier(threads=1)


def _image_with_label(frames: int = 1, label_on: tuple[int, ...] = (0,)) -> Dataset:
    """A CT-like 8-bit instance (no header flag) with a bright 'label' block on some frames."""
    ds, _ = build_image(bits_stored=8, rows=96, columns=128, frames=frames)
    ds.Modality = "CT"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    for keyword in ("ImageType", "ConversionType", "BurnedInAnnotation"):
        if keyword in ds:
            delattr(ds, keyword)
    values = np.zeros((frames, 96, 128), np.uint8) + 40
    for index in label_on:
        values[index, 4:14, 6:60] = 255  # the 'banner'
    ds.PixelData = values.tobytes()
    return ds


def test_a_frame_below_low_without_flags_keeps_its_pixel_data_byte_for_byte(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    before = bytes(ds.PixelData)
    pin_scores(monkeypatch, 0.0)
    engine = _Scripted(_bright_regions)
    result = scrub_instance(ds, classifier=classifier, engine=engine, deidentifier=deidentifier)
    assert result.outcome is Outcome.CLEAN and result.ocr_frames == 0 and engine.calls == 0
    assert result.dataset is ds and bytes(ds.PixelData) == before
    assert ds.PatientIdentityRemoved == "YES"


def test_ocr_finding_nothing_in_a_middling_frame_confirms_it_clean(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    before = bytes(ds.PixelData)
    pin_scores(monkeypatch, (classifier.thresholds.low + classifier.thresholds.high) / 2)
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(lambda v: []), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.CLEAN and result.ocr_frames == 1
    assert bytes(ds.PixelData) == before


def test_text_is_blacked_out_in_stored_values_and_verified(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    pin_scores(monkeypatch, 0.99)
    engine = _Scripted(_bright_regions)
    result = scrub_instance(ds, classifier=classifier, engine=engine, deidentifier=deidentifier)
    assert result.outcome is Outcome.SCRUBBED and result.pixels_changed
    frame = next(iter_frames(ds))
    assert frame[4:14, 6:60].max() == 0  # black in stored values, margin included
    assert frame[40:, :].min() == 40  # the rest untouched
    assert engine.calls == 2  # the first read and the verification read
    assert ds.BurnedInAnnotation == "NO"
    assert result.redacted_regions == 1 and result.decisions == {"policy_all": 1}


def test_cine_frames_share_banners(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label(frames=3, label_on=(1,))
    pin_scores(monkeypatch, 0.5)
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(_bright_regions), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.SCRUBBED
    assert all(frame[4:14, 6:60].max() == 0 for frame in iter_frames(ds))
    assert [box[0] for box in result.boxes] == [-1]  # one box, every frame


def test_a_sure_score_with_no_text_found_is_quarantined_as_uncertain(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    pin_scores(monkeypatch, 0.999)
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(lambda v: []), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.QUARANTINED
    assert result.reason is QuarantineReason.UNCERTAIN_SCORE
    assert result.dataset is None and not result.released


def test_text_that_keeps_appearing_on_re_reads_quarantines(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    pin_scores(monkeypatch, 0.99)
    calls = {"n": 0}

    def elusive(view: np.ndarray) -> list[TextRegion]:  # a new line somewhere on every read
        calls["n"] += 1
        return [TextRegion(4, 10 + 16 * calls["n"], 40, 9, "DOE JOHN", 0.99)]

    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(elusive), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.QUARANTINED
    assert result.reason is QuarantineReason.VERIFICATION_FAILED
    assert calls["n"] == 4  # the first read, the re-read and two extra rounds
    assert "DOE" not in (result.message or "")


def test_shapes_seen_in_flat_black_on_the_re_read_do_not_count(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    pin_scores(monkeypatch, 0.99)
    stubborn = _Scripted(lambda v: [TextRegion(6, 4, 54, 10, "DOE JOHN", 0.99)])
    result = scrub_instance(ds, classifier=classifier, engine=stubborn, deidentifier=deidentifier)
    assert result.outcome is Outcome.SCRUBBED and stubborn.calls == 2
    assert next(iter_frames(ds))[4:14, 6:60].max() == 0


@pytest.mark.parametrize(
    ("region", "released"),
    [
        (TextRegion(61, 2, 5, 14, "l", 0.87), True),  # a box edge read as one stroke
        (TextRegion(61, 2, 5, 20, "11", 0.75), True),  # a sliver read as two strokes
        (TextRegion(70, 30, 9, 10, "L", 0.9), True),  # one glyph: identifies nobody
        (TextRegion(61, 4, 14, 10, "95", 0.9), False),  # the rest of a date beside a box
        (TextRegion(61, 4, 8, 10, "7", 0.4), True),  # one digit left of an ID
        (TextRegion(70, 20, 6, 30, "DOE", 0.9), False),  # rotated text is tall and narrow too
    ],
)
def test_lone_marks_on_the_re_read_are_not_residual_text(
    classifier: TextClassifier,
    deidentifier: Deidentifier,
    monkeypatch: pytest.MonkeyPatch,
    region: TextRegion,
    released: bool,
) -> None:
    """Strokes and single glyphs beside boxes are left; two legible characters are not."""
    ds = _image_with_label()
    pin_scores(monkeypatch, 0.99)
    first = TextRegion(6, 4, 54, 10, "DOE JOHN", 0.99)
    reads = {"n": 0}

    def script(view: np.ndarray) -> list[TextRegion]:  # the same stray region on every re-read
        reads["n"] += 1
        return [first] if reads["n"] == 1 else [first, region]

    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(script), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.SCRUBBED
    covered = any(
        x <= region.x and region.x + region.width <= x + w and y <= region.y
        for _, x, y, w, _h in result.boxes
    )
    if released:  # left alone: no extra round, no box for it
        assert reads["n"] == 2 and not covered
    else:  # residual text: blacked out in an extra round, then a clean re-read
        assert reads["n"] == 3 and covered


@pytest.mark.parametrize("policy", ["all", "phi"])
def test_a_laterality_marker_is_kept_under_either_policy(
    classifier: TextClassifier,
    deidentifier: Deidentifier,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
) -> None:
    ds = _image_with_label()
    before = bytes(ds.PixelData)
    pin_scores(monkeypatch, 0.5)
    marker = _Scripted(lambda v: [TextRegion(6, 4, 10, 10, "L", 0.99)])
    result = scrub_instance(
        ds,
        classifier=classifier,
        engine=marker,
        deidentifier=deidentifier,
        config=ScrubConfig(policy=policy),  # type: ignore[arg-type]
    )
    assert result.outcome is Outcome.CLEAN and result.decisions == {"lone_mark": 1}
    assert bytes(ds.PixelData) == before


def _float_map(label: bool) -> Dataset:
    """A parametric map: 32-bit Float Pixel Data, with a bright 'label' block or without."""
    ds = _image_with_label(label_on=(0,) if label else ())
    values = np.frombuffer(ds.PixelData, np.uint8).astype("<f4") / 255.0
    del ds.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    return ds


@pytest.mark.parametrize("score", [0.0, 0.5])  # below low; read by OCR, which finds nothing
def test_a_clean_float_map_is_released_with_its_values_untouched(
    classifier: TextClassifier,
    deidentifier: Deidentifier,
    monkeypatch: pytest.MonkeyPatch,
    score: float,
) -> None:
    ds = _float_map(label=False)
    before = bytes(ds.FloatPixelData)
    pin_scores(monkeypatch, score)
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(lambda v: []), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.CLEAN and bytes(ds.FloatPixelData) == before
    assert result.ocr_frames == (1 if score else 0)


def test_text_in_a_float_map_is_held_not_rewritten(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _float_map(label=True)
    pin_scores(monkeypatch, 0.5)
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(_bright_regions), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.QUARANTINED
    assert result.reason is QuarantineReason.UNSUPPORTED_ENCODING
    assert result.boxes  # the reviewer sees where the text is


def test_encapsulated_documents_and_video_are_unsupported_objects(
    classifier: TextClassifier, deidentifier: Deidentifier
) -> None:
    engine = _Scripted(lambda v: [])
    pdf, _ = build_image()
    del pdf.PixelData
    pdf.EncapsulatedDocument = b"%PDF-1.4 ..."
    video, _ = build_image()
    video.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.102")
    for ds in (pdf, video):
        result = scrub_instance(ds, classifier=classifier, engine=engine, deidentifier=deidentifier)
        assert result.reason is QuarantineReason.UNSUPPORTED_OBJECT


def test_undecodable_pixels_are_quarantined_with_a_reason(
    classifier: TextClassifier, deidentifier: Deidentifier
) -> None:
    from pydicom.encaps import encapsulate

    ds, _ = build_image(rows=32, columns=32)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.50")  # JPEG baseline
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg \xff\xd9"])
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(lambda v: []), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.QUARANTINED
    assert result.reason is QuarantineReason.UNDECODABLE


def test_metadata_only_instances_are_de_identified_and_released(
    classifier: TextClassifier, deidentifier: Deidentifier
) -> None:
    ds, _ = build_image()
    del ds.PixelData
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(lambda v: []), deidentifier=deidentifier
    )
    assert result.outcome is Outcome.CLEAN and result.frames == 0
    assert ds.PatientIdentityRemoved == "YES"


def test_an_unexpected_error_fails_closed(
    classifier: TextClassifier, deidentifier: Deidentifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _image_with_label()
    pin_scores(monkeypatch, 0.5)

    def broken(view: np.ndarray) -> list[TextRegion]:
        raise RuntimeError("DOE JOHN engine crashed")

    result = scrub_instance(
        ds, classifier=classifier, engine=_Scripted(broken), deidentifier=deidentifier
    )
    assert result.reason is QuarantineReason.INTERNAL_ERROR and result.dataset is None
    assert "DOE" not in (result.message or "")


@pytest.mark.slow
def test_real_ocr_blacks_out_a_banner_and_the_header_values_are_gone_from_the_pixels(
    classifier: TextClassifier, deidentifier: Deidentifier
) -> None:
    ds = ultrasound_with_banner("MILLER ROSE", "8812345")
    engine = load_engine("rapidocr", threads=2)
    result = scrub_instance(ds, classifier=classifier, engine=engine, deidentifier=deidentifier)
    assert result.outcome is Outcome.SCRUBBED, result.message
    assert "ultrasound" in result.flags
    view = render_frame(next(iter_frames(ds)), ds, describe_pixels(ds))
    left = " ".join(r.text for r in read_text(engine, view).regions).upper()
    assert "MILLER" not in left and "8812345" not in left
    assert view[30:, 200:440].max() > 0  # the anatomy is still there
    assert str(ds.PatientName) != "MILLER^ROSE"
