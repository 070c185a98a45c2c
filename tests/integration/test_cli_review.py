"""``scrubber review``: list, show, release with boxes, reject; audit and ledger kept in step."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.dicom_io.pixels import iter_frames
from scrubber.review import ReviewQueue
from tests.burned_in import ID_BOX, NAME_BOX, hold_banner, ultrasound_with_banner

runner = CliRunner()

pytestmark = pytest.mark.slow


def _hold(quarantine: Path, name: str, boxes: list[tuple[int, int, int, int, int]]) -> Path:
    return hold_banner(quarantine, Path("site") / name, boxes)


def _env(tmp_path: Path) -> dict[str, str]:
    return {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def test_list_show_release_and_reject_with_an_audit_trail(tmp_path: Path) -> None:
    quarantine, out = tmp_path / "out.quarantine", tmp_path / "out"
    _hold(quarantine, "a.dcm", [NAME_BOX])
    _hold(quarantine, "b.dcm", [NAME_BOX, ID_BOX])
    listed = runner.invoke(app, ["review", "list", str(quarantine), "--json"])
    assert listed.exit_code == 0, listed.output
    items = [json.loads(line) for line in listed.output.splitlines()]
    assert len(items) == 2 and {i["reason"] for i in items} == {"uncertain_score"}
    assert "MILLER" not in listed.output and "a.dcm" not in listed.output
    queue = ReviewQueue(quarantine)
    by_input = {item.input: item.id for item in queue.items()}
    first, second = by_input["site/a.dcm"], by_input["site/b.dcm"]

    png = tmp_path / "a.png"
    shown = runner.invoke(app, ["review", "show", str(quarantine), first, "--png", str(png)])
    assert shown.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"

    common = ["--out", str(out), "-p", "TRIAL", "--reviewer", "dr.who"]
    # the proposed box covers the name only: the ID is still legible, so the release stops
    stopped = runner.invoke(
        app, ["review", "release", str(quarantine), first, *common], env=_env(tmp_path)
    )
    assert stopped.exit_code == 1 and "residual text" in stopped.output
    assert not (out / "site" / "a.dcm").exists() and queue.get(first)
    # the reviewer adds the ID box: released, verified, de-identified
    boxes = ["--box", "4,6,170,26", "--box", "474,6,110,26"]
    released = runner.invoke(
        app,
        ["review", "release", str(quarantine), first, *common, *boxes],
        env=_env(tmp_path),
    )
    assert released.exit_code == 0, released.output
    output = pydicom.dcmread(out / "site" / "a.dcm")
    frame = next(iter_frames(output))
    assert not frame[6:32, 4:174].any() and not frame[6:32, 474:584].any()
    assert output.PatientName != "MILLER^ROSE" and output.BurnedInAnnotation == "NO"
    rejected = runner.invoke(
        app, ["review", "reject", str(quarantine), second, "--reviewer", "dr.who"]
    )
    assert rejected.exit_code == 0, rejected.output
    assert queue.items() == []
    assert not [p for p in quarantine.rglob("*") if p.is_file() and p.name != "review-audit.sqlite"]
    audit = queue.audit()
    assert [(a["item"], a["action"], a["reviewer"]) for a in audit] == [
        (first, "release", "dr.who"),
        (second, "reject", "dr.who"),
    ]
    assert "MILLER" not in json.dumps(audit) and "8812345" not in json.dumps(audit)


def test_a_decision_on_a_run_output_is_recorded_in_its_ledger(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    ultrasound_with_banner("MILLER ROSE", "8812345").save_as(
        source / "us.dcm", enforce_file_format=True
    )
    (source / "broken.dcm").write_bytes(b"DICM" * 40)
    report = tmp_path / "report.jsonl"
    args = ["run", str(source), "--out", str(out), "-p", "TRIAL", "-j", "1", "-q"]
    first = runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    assert first.exit_code == 1, first.output
    quarantine = tmp_path / "out.quarantine"
    item = ReviewQueue(quarantine).items()[0]
    assert item.input == "broken.dcm" and item.reason == "unreadable"
    ledger = tmp_path / "out.ledger.sqlite"
    result = runner.invoke(
        app,
        ["review", "reject", str(quarantine), item.id, "--reviewer", "r1", "--ledger", str(ledger)],
    )
    assert result.exit_code == 0, result.output
    with sqlite3.connect(ledger) as db:
        outcome = db.execute("SELECT outcome FROM inputs WHERE input = 'broken.dcm'").fetchone()
    assert outcome == ("rejected",)
    again = runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    assert again.exit_code == 0, again.output  # nothing is held any more; nothing is redone
    rows = {r["input"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert rows["broken.dcm"]["outcome"] == "rejected" and rows["broken.dcm"]["output"] is None
    assert rows["us.dcm"]["outcome"] == "scrubbed"


def test_unknown_ids_and_boxes_outside_the_frame_are_refused(tmp_path: Path) -> None:
    quarantine = tmp_path / "q"
    _hold(quarantine, "a.dcm", [NAME_BOX])
    missing = runner.invoke(app, ["review", "show", str(quarantine), "0123456789abcdef"])
    assert missing.exit_code == 2 and "No held instance" in missing.output
    item = ReviewQueue(quarantine).items()[0]
    args = ["review", "release", str(quarantine), item.id, "--out", str(tmp_path / "o")]
    bad = runner.invoke(
        app,
        [*args, "-p", "T", "--reviewer", "r", "--box", "1,1,5,5,3"],
        env=_env(tmp_path),
    )
    assert bad.exit_code == 2 and "frame 3" in bad.output
    assert ReviewQueue(quarantine).items()[0].path.exists()  # still held
