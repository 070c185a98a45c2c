"""``scrubber classify`` end to end: scores, flags and routes per file, no PHI printed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.samples import build_image, write_samples
from tests.conftest import ROOT
from tests.phi_scan import identifying_values, read

runner = CliRunner()
pytestmark = pytest.mark.skipif(
    not (ROOT / "models" / "text_classifier.json").exists(),
    reason="no shipped classifier in models/ (make train writes it)",
)


def _ct_with_text(path: Path, text: bool) -> Path:
    ds, _ = build_image(photometric="MONOCHROME2", bits_stored=8, rows=512, columns=512, seed=3)
    yy, xx = np.mgrid[0:512, 0:512]
    body = ((yy - 256) ** 2 / 200**2 + (xx - 256) ** 2 / 230**2) < 1
    pixels: np.ndarray = np.where(body, 110, 5).astype(np.uint8)
    pixels = cv2.GaussianBlur(pixels, (0, 0), 3)
    if text:
        for i, line in enumerate(["DOE^JANE", "ID 12345678", "DOB 01/02/1961"]):
            cv2.putText(pixels, line, (8, 20 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1)
    ds.PixelData = pixels.tobytes()
    ds.Modality = "CT"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    for keyword in ("ConversionType", "BurnedInAnnotation"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_classify_routes_text_to_ocr_and_plain_images_clean(tmp_path: Path) -> None:
    _ct_with_text(tmp_path / "with_text.dcm", text=True)
    _ct_with_text(tmp_path / "plain.dcm", text=False)
    result = runner.invoke(app, ["classify", str(tmp_path), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, result.output.splitlines())}
    assert records["with_text.dcm"]["route"] == "ocr"
    assert records["with_text.dcm"]["frames_at_or_above_low"] == 1
    assert records["plain.dcm"]["route"] == "clean"
    assert records["plain.dcm"]["flags"] == []
    assert records["with_text.dcm"]["max_score"] > records["plain.dcm"]["max_score"]


def test_classify_prints_flags_and_never_header_values(tmp_path: Path) -> None:
    files = write_samples(tmp_path / "in", patients=1, seed=2)
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    (tmp_path / "in" / "broken.dcm").write_bytes(b"DICM" * 10)
    result = runner.invoke(app, ["classify", str(tmp_path / "in"), "--json"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    by_name = {Path(r["input"]).name: r for r in lines}
    assert "notes.txt" not in by_name
    ultrasound = [r for r in lines if "ultrasound" in r.get("flags", [])]
    assert ultrasound and all(r["route"] == "ocr" for r in ultrasound)
    table = runner.invoke(app, ["classify", str(tmp_path / "in")])
    assert "low=" in table.output
    for path in files:
        for token in identifying_values(read(path)):
            assert token not in result.output and token not in table.output


def test_classify_reports_unreadable_files_and_exits_1(tmp_path: Path) -> None:
    good = _ct_with_text(tmp_path / "ok.dcm", text=False)
    bad = tmp_path / "bad.dcm"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["classify", str(tmp_path), "--json"])
    assert result.exit_code == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, result.output.splitlines())}
    assert "error" in records["bad.dcm"] and records["ok.dcm"]["route"] == "clean"
    assert pydicom.dcmread(good).Modality == "CT"


def test_classify_rejects_a_bad_device_and_a_missing_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["classify", str(tmp_path), "--device", "tpu"])
    assert result.exit_code == 2 and "--device" in result.output
    empty = tmp_path / "nomodel"
    empty.mkdir()
    result = runner.invoke(app, ["classify", str(tmp_path), "--model-dir", str(empty)])
    assert result.exit_code == 2
