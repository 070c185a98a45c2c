"""``scrubber scrub`` end to end, as a user runs it: outputs, quarantine, report, exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.samples import write_samples
from tests.burned_in import ultrasound_with_banner

runner = CliRunner()

pytestmark = pytest.mark.slow


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    write_samples(source, patients=1, seed=3)
    banner = ultrasound_with_banner("MILLER ROSE", "8812345")
    banner.save_as(source / "banner.dcm", enforce_file_format=True)
    (source / "notes.txt").write_text("not an image")
    (source / "broken.dcm").write_bytes(b"DICM" * 40)  # not parseable
    return source


def test_scrub_a_tree_writes_outputs_and_a_separate_quarantine(tree: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    env = {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = runner.invoke(
        app,
        ["scrub", str(tree), str(out), "-p", "TRIAL", "--threads", "2", "--report", str(report)],
        env=env,
    )
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    by_name = {Path(row["input"]).name: row for row in rows}
    # every DICOM input ends in exactly one place
    assert by_name["banner.dcm"]["status"] == "scrubbed", result.output
    assert by_name["notes.txt"]["status"] == "skipped"
    assert by_name["broken.dcm"]["status"] == "quarantined"
    assert by_name["broken.dcm"]["reason"] == "unreadable"
    released = [row for row in rows if row["status"] in ("clean", "scrubbed")]
    assert released and all(Path(row["output"]).is_file() for row in released)
    assert not (out / "broken.dcm").exists() and not (out / "notes.txt").exists()
    held = tmp_path / "out.quarantine" / "unreadable" / "broken.dcm"
    assert held.read_bytes() == (tree / "broken.dcm").read_bytes()
    note = json.loads(held.with_name("broken.dcm.json").read_text())
    assert note["reason"] == "unreadable"
    # the scrubbed output: de-identified header, banner black, marked clean
    scrubbed = pydicom.dcmread(out / "banner.dcm")
    assert "MILLER" not in str(scrubbed.PatientName) and scrubbed.PatientID != "8812345"
    assert scrubbed.BurnedInAnnotation == "NO"
    assert scrubbed.pixel_array[5:30, 10:160].max() == 0
    # a quarantined input makes the exit code 1; nothing identifying is printed or reported
    assert result.exit_code == 1
    text = result.output + report.read_text()
    assert "MILLER" not in text and "8812345" not in text


def test_scrub_refuses_a_quarantine_inside_the_output(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["scrub", str(tree), str(out), "-p", "TRIAL", "--quarantine", str(out / "q")],
        env={"SCRUBBER_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 2
    assert "quarantine" in result.output and not out.exists()


def test_scrub_refuses_an_unknown_policy(tree: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["scrub", str(tree), str(tmp_path / "out"), "-p", "TRIAL", "--policy", "some"],
        env={"SCRUBBER_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 2 and "--policy" in result.output
