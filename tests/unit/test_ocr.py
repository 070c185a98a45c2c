"""OCR interface: registry, tiling, implausible boxes, and the RapidOCR engine on drawn text."""

from __future__ import annotations

import itertools
from typing import ClassVar

import cv2
import numpy as np
import pytest

from scrubber.detect.ocr import (
    ENGINES,
    DeferredEngine,
    OcrEngine,
    OcrUnavailableError,
    TextRegion,
    available_engines,
    check_engine,
    load_engine,
    merge_regions,
    read_text,
    register_engine,
    tiles,
)
from tests.conftest import require_training_extra


class _Scripted:
    """A stand-in engine that reports fixed boxes in tile coordinates and records its calls."""

    name = "scripted"

    def __init__(self, max_side: int, regions: list[TextRegion]) -> None:
        self.max_side = max_side
        self.regions = regions
        self.calls: list[tuple[int, int]] = []

    def read(self, view: np.ndarray) -> list[TextRegion]:
        self.calls.append(view.shape[:2])
        return list(self.regions)


def test_text_is_kept_out_of_the_repr() -> None:
    region = TextRegion(1, 2, 30, 10, "DOE^JANE 1234567", 0.9)
    assert "DOE" in region.text
    assert "DOE" not in repr(region) and "1234567" not in repr(region)


@pytest.mark.parametrize(("rows", "columns"), [(100, 100), (1600, 1600), (2140, 1760), (5000, 300)])
def test_tiles_cover_the_frame_with_the_promised_overlap(rows: int, columns: int) -> None:
    side, overlap = 1000, 160
    cut = tiles(rows, columns, side, overlap)
    covered = np.zeros((rows, columns), np.int32)
    for x, y, w, h in cut:
        assert 0 < w <= side and 0 < h <= side
        assert x + w <= columns and y + h <= rows
        covered[y : y + h, x : x + w] += 1
    assert covered.min() >= 1
    # any line up to `overlap` px tall lies whole inside one tile: neighbouring tiles share rows
    starts = sorted({y for _, y, _, _ in cut})
    heights = {y: h for _, y, _, h in cut}
    for a, b in itertools.pairwise(starts):
        assert a + heights[a] - b >= overlap


def test_large_frames_are_read_in_tiles_and_boxes_come_back_in_frame_coordinates() -> None:
    engine = _Scripted(600, [TextRegion(10, 20, 50, 12, "X", 0.9)])
    view = np.zeros((1000, 1300), np.uint8)
    result = read_text(engine, view)
    assert result.tiles == len(engine.calls) > 1
    assert all(max(shape) <= 600 for shape in engine.calls)
    origins = {(x, y) for x, y, _, _ in tiles(1000, 1300, 600, 160)}
    assert {(r.x - 10, r.y - 20) for r in result.regions} == origins


def test_boxes_no_text_line_could_have_are_dropped_and_counted() -> None:
    whole = TextRegion(0, 0, 500, 400, "", 0.6)  # most of the frame
    line = TextRegion(20, 30, 200, 14, "12/03/1961", 0.95)
    sliver = TextRegion(5, 5, 1, 40, "", 0.5)
    engine = _Scripted(1600, [whole, line, sliver])
    result = read_text(engine, np.zeros((512, 512, 3), np.uint8))
    assert [r.box for r in result.regions] == [line.box]
    assert result.rejected == 2


def test_vertical_lines_are_kept() -> None:
    rotated = TextRegion(480, 10, 16, 300, "R", 0.9)  # a rotated banner: tall but thin
    result = read_text(_Scripted(1600, [rotated]), np.zeros((512, 512), np.uint8))
    assert [r.box for r in result.regions] == [rotated.box]


def test_boxes_are_clipped_to_the_frame() -> None:
    result = read_text(
        _Scripted(1600, [TextRegion(-4, 500, 40, 20, "A", 0.9)]), np.zeros((512, 512), np.uint8)
    )
    assert [r.box for r in result.regions] == [(0, 500, 36, 12)]


def test_merge_drops_lines_read_twice_in_overlapping_tiles() -> None:
    a = TextRegion(100, 100, 200, 20, "AB", 0.9)
    b = TextRegion(150, 102, 120, 17, "B", 0.8)  # inside a
    c = TextRegion(100, 140, 200, 20, "CD", 0.9)  # another line
    assert [r.box for r in merge_regions([b, a, c])] == [a.box, c.box]


def test_read_text_refuses_raw_stored_values() -> None:
    with pytest.raises(ValueError, match="uint8"):
        read_text(_Scripted(1600, []), np.zeros((10, 10), np.uint16))


def test_unknown_engines_are_refused_with_the_choices() -> None:
    with pytest.raises(OcrUnavailableError, match="rapidocr"):
        load_engine("tesseract-9000")


def test_registered_engines_load_lazily_by_name() -> None:
    built: list[int | None] = []

    def factory(threads: int | None = None) -> OcrEngine:
        built.append(threads)
        return _Scripted(1600, [])

    register_engine("test-scripted", factory)
    try:
        first = load_engine("test-scripted", threads=1)
        again = load_engine("test-scripted", threads=1)
        assert first is again and built == [1]
        assert "test-scripted" in available_engines()
    finally:
        del ENGINES["test-scripted"]


def test_a_missing_engine_package_is_a_clear_error() -> None:
    register_engine("test-missing", "scrubber_no_such_module:Engine")
    try:
        with pytest.raises(OcrUnavailableError, match="cannot be imported"):
            load_engine("test-missing")
    finally:
        del ENGINES["test-missing"]


def test_a_deferred_engine_loads_on_first_read_and_only_once() -> None:
    built: list[int | None] = []

    def factory(threads: int | None = None) -> OcrEngine:
        built.append(threads)
        return _Scripted(1600, [TextRegion(1, 2, 30, 10, "x", 0.9)])

    register_engine("test-deferred", factory)
    try:
        engine = DeferredEngine("test-deferred", threads=3)
        assert engine.name == "test-deferred" and built == []  # nothing loaded yet
        assert engine.read(np.zeros((20, 40), np.uint8))[0].width == 30
        assert engine.max_side == 1600
        engine.read(np.zeros((20, 40), np.uint8))
        assert engine.loaded and built == [3]
    finally:
        del ENGINES["test-deferred"]


def test_a_deferred_engine_that_cannot_load_says_so_at_every_use() -> None:
    attempts: list[int] = []

    def broken(threads: int | None = None) -> OcrEngine:
        attempts.append(1)
        raise RuntimeError("a damaged model file")

    register_engine("test-broken", broken)
    try:
        engine = DeferredEngine("test-broken")
        for _ in range(2):
            with pytest.raises(OcrUnavailableError, match=r"failed to load \(RuntimeError"):
                engine.read(np.zeros((8, 8), np.uint8))
        assert engine.error is not None and attempts == [1]  # not retried on every frame
    finally:
        del ENGINES["test-broken"]
    with pytest.raises(OcrUnavailableError, match="unknown OCR engine"):
        DeferredEngine("tesseract-9000")


class _Checked(_Scripted):
    checks: ClassVar[list[str]] = []

    @staticmethod
    def check() -> None:
        _Checked.checks.append("checked")
        raise OcrUnavailableError("model files are missing")


def test_check_engine_runs_the_engine_check_without_building_it() -> None:
    register_engine("test-checked", _Checked)
    register_engine("test-missing", "scrubber_no_such_module:Engine")
    try:
        with pytest.raises(OcrUnavailableError, match="model files are missing"):
            check_engine("test-checked")
        assert _Checked.checks == ["checked"]
        with pytest.raises(OcrUnavailableError, match="cannot be imported"):
            check_engine("test-missing")
        with pytest.raises(OcrUnavailableError, match="unknown OCR engine"):
            check_engine("tesseract-9000")
    finally:
        del ENGINES["test-checked"], ENGINES["test-missing"]
    check_engine("rapidocr")  # the bundled models are there


def test_rapidocr_check_names_missing_model_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from scrubber.detect import ocr_rapid

    monkeypatch.setitem(ocr_rapid.MODEL_FILES, "Det", "no-such-detector.onnx")
    with pytest.raises(OcrUnavailableError, match=r"no-such-detector\.onnx"):
        check_engine("rapidocr")


def _banner_frame() -> np.ndarray:
    view = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(view, (320, 280), 150, (90, 90, 90), -1)
    cv2.putText(view, "SMITH JOHN", (12, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    cv2.putText(view, "ID 4417302", (470, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    cv2.putText(view, "03/14/1962", (12, 460), cv2.FONT_HERSHEY_DUPLEX, 0.5, (200, 200, 200), 1)
    return view


@pytest.mark.slow
def test_rapidocr_finds_and_reads_banner_text() -> None:
    engine = load_engine("rapidocr", threads=2)
    result = read_text(engine, _banner_frame())
    texts = " ".join(r.text for r in result.regions).replace(" ", "")
    assert "SMITH" in texts and "4417302" in texts and "1962" in texts
    for region in result.regions:
        assert region.y < 40 or region.y > 430  # nothing found on the plain disc


@pytest.mark.slow
def test_rapidocr_finds_nothing_on_a_text_free_frame() -> None:
    engine = load_engine("rapidocr", threads=2)
    view = _banner_frame()
    view[:40] = 0
    view[430:] = 0
    assert read_text(engine, view).regions == []


def test_very_large_frames_are_reduced_and_boxes_scaled_back() -> None:
    engine = _Scripted(4096, [TextRegion(100, 50, 200, 20, "X", 0.9)])
    result = read_text(engine, np.zeros((3000, 4096), np.uint8))
    assert engine.calls == [(1500, 2048)]
    assert [r.box for r in result.regions] == [(200, 100, 400, 40)]


@pytest.mark.slow
def test_easyocr_reads_the_banner_offline_with_checked_weights() -> None:
    require_training_extra("easyocr", "easyocr_en_models", "torch")
    from scrubber.detect.ocr_easy import check_models

    assert {p.name for p in check_models().iterdir()} >= {"craft_mlt_25k.pth", "english_g2.pth"}
    engine = load_engine("easyocr", threads=2)
    texts = " ".join(r.text for r in read_text(engine, _banner_frame()).regions).replace(" ", "")
    assert "SMITH" in texts.upper() and "4417302" in texts


def test_easyocr_refuses_weights_whose_md5_does_not_match(monkeypatch: pytest.MonkeyPatch) -> None:
    require_training_extra("easyocr", "easyocr_en_models")
    from easyocr import config

    from scrubber.detect.ocr_easy import check_models

    craft = dict(config.detection_models["craft"], md5sum="0" * 32)
    monkeypatch.setitem(config.detection_models, "craft", craft)
    with pytest.raises(OcrUnavailableError, match="MD5"):
        check_models()


def test_a_lone_low_confidence_glyph_is_a_marker_not_text() -> None:
    circle = TextRegion(228, 52, 22, 20, "c", 0.16)  # a focus marker read as a letter
    marker = TextRegion(10, 10, 12, 14, "L", 0.95)  # a real laterality letter
    unreadable_line = TextRegion(40, 300, 90, 9, "", 0.0)  # a line too small to read
    view = np.zeros((512, 512), np.uint8)
    result = read_text(_Scripted(1600, [circle, marker, unreadable_line]), view)
    assert [r.box for r in result.regions] == [marker.box, unreadable_line.box]
    assert result.rejected == 1
