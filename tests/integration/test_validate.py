"""The validation toolkit: ``scrubber synth`` builds a set with an answer key, ``scrubber evaluate``
scores a de-identified copy the MIDI way, and a leaky copy fails with exactly its leaks listed.

The reference de-identification here is ``scrubber deid`` (header) plus the answer boxes painted
black with ``scrubber.redact``: what a perfect pixel scrubber would do. Each leak is then put in
by hand, so the test knows exactly which checks must fail.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.dicom_io.encode import encode_frames
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.redact import Box
from scrubber.redact.instance import redact_instance
from scrubber.validate import AnswerKey, AnswerKeyError, SynthSettings, evaluate, synthesize
from scrubber.validate.evaluate import EvaluationError, read_mapping, write_report
from scrubber.validate.score import values_digest

runner = CliRunner()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def validation_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("validation") / "set"
    synthesize(folder, SynthSettings(count=8, seed=3, burn_share=0.5, multiframe_share=0.0))
    return folder


def _env(home: Path) -> dict[str, str]:
    return {"SCRUBBER_HOME": str(home), "COLUMNS": "200"}


def _reference_deid(validation: Path, out: Path, home: Path) -> tuple[Path, Path]:
    """De-identify the header with `scrubber deid`, paint every answer box black, export maps."""
    result = runner.invoke(
        app, ["deid", str(validation / "input"), str(out), "-p", "VALID", "-q"], env=_env(home)
    )
    assert result.exit_code == 0, result.output
    key = AnswerKey.read(validation / "answer_key.sqlite")
    for instance in key:
        boxes = [
            Box(a.box[0], a.box[1], a.box[2], a.box[3], a.frame)
            for a in instance.answers
            if a.action == "pixels_hidden" and a.box is not None
        ]
        if boxes:
            path = out / instance.file_path
            ds = pydicom.dcmread(path)
            redact_instance(ds, boxes)
            ds.save_as(path, enforce_file_format=True)
    maps = []
    for kind in ("uid", "patient_id"):
        target = out.parent / f"{kind}_map.csv"
        result = runner.invoke(
            app,
            ["keys", "export", "-p", "VALID", "--kind", kind, "--out", str(target)],
            env=_env(home),
        )
        assert result.exit_code == 0, result.output
        maps.append(target)
    return maps[0], maps[1]


def test_synth_writes_files_and_a_key_that_describes_each_of_them(validation_set: Path) -> None:
    key = AnswerKey.read(validation_set / "answer_key.sqlite")
    copy = AnswerKey.read(validation_set / "answer_key.json")
    assert len(key) == len(copy) == 8
    assert [i.answers for i in key] == [i.answers for i in copy]
    files = sorted(
        p.relative_to(validation_set / "input").as_posix()
        for p in (validation_set / "input").rglob("*.dcm")
    )
    assert files == sorted(i.file_path for i in key)
    for instance in key:
        ds = pydicom.dcmread(validation_set / "input" / instance.file_path)
        assert str(ds.SOPInstanceUID) == instance.sop_instance_uid
        assert str(ds.PatientID) == instance.patient_id
        actions = {a.action for a in instance.answers}
        assert {
            "text_removed",
            "date_shifted",
            "uid_changed",
            "uid_consistent",
            "patid_consistent",
        } <= actions
        # the unusual places the MIDI list names are in the key
        names = {a.tag_name for a in instance.answers}
        assert {
            "Patient Comments",
            "Study Description",
            "Additional Patient History",
            "Reason for Study",
            "Device Serial Number",
            "Station Name",
            "Private: patient",
        } <= names
        assert any(a.tag_ds.startswith("(0040,0275)[0]/") for a in instance.answers)
        if instance.burned_in:
            hidden = [a for a in instance.answers if a.action == "pixels_hidden"]
            assert hidden and "pixels_retained" not in actions
            assert str(ds.BurnedInAnnotation) == "YES"
            frame = next(iter_frames(ds))
            x, y, w, h = hidden[0].box or (0, 0, 0, 0)
            assert np.ptp(frame[y : y + h, x : x + w]) > 0  # something was drawn there
        else:
            retained = [a for a in instance.answers if a.action == "pixels_retained"]
            assert len(retained) == instance.frames
            assert values_digest(next(iter_frames(ds))) == retained[0].action_text
    assert sum(i.burned_in for i in key) == 4


def test_the_same_seed_builds_the_same_set(tmp_path: Path) -> None:
    settings = SynthSettings(count=5, seed=11, burn_share=0.4, check_legible=False)
    first, second = synthesize(tmp_path / "a", settings), synthesize(tmp_path / "b", settings)
    files = sorted(p.relative_to(first.input_dir) for p in first.input_dir.rglob("*.dcm"))
    assert files == sorted(p.relative_to(second.input_dir) for p in second.input_dir.rglob("*.dcm"))
    for name in files:
        assert (first.input_dir / name).read_bytes() == (second.input_dir / name).read_bytes()
    assert json.loads(first.key_json.read_text()) == json.loads(second.key_json.read_text())


def test_synth_refuses_a_folder_that_already_holds_files(tmp_path: Path) -> None:
    (tmp_path / "set" / "input").mkdir(parents=True)
    (tmp_path / "set" / "input" / "old.dcm").write_bytes(b"x")
    result = runner.invoke(app, ["synth", str(tmp_path / "set"), "--n", "2", "-q"])
    assert result.exit_code == 2
    assert "already holds files" in result.output


def test_a_perfect_deidentification_scores_100_percent(
    validation_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "deid"
    uid_map, patid_map = _reference_deid(validation_set, out, tmp_path / "home")
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out),
            "--answer-key",
            str(validation_set / "answer_key.sqlite"),
            "--uid-map",
            str(uid_map),
            "--patid-map",
            str(patid_map),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "score: 100.00%"
    report = tmp_path / "deid.evaluation"
    summary = json.loads((report / "evaluation.json").read_text())
    assert summary["failures"] == [] and summary["instances"] == {"released": 8}
    assert summary["by_action"]["pixels_hidden"]["total"] > 0
    # a reference the profile keeps is checked against the map, not passed for being gone
    kept = [
        pydicom.dcmread(p).ReferencedImageSequence[0].ReferencedSOPInstanceUID
        for p in out.rglob("*.dcm")
        if "ReferencedImageSequence" in pydicom.dcmread(p, stop_before_pixels=True)
    ]
    assert kept and all(uid.startswith("2.25.") for uid in kept)
    page = (report / "report.html").read_text()
    assert "score: 100.00%" in page
    thumbs = sorted((report / "thumbs").iterdir())
    assert len(thumbs) == 2 * (
        summary["by_action"]["pixels_hidden"]["total"]
        + summary["by_action"]["pixels_retained"]["total"]
    )
    with sqlite3.connect(report / "validation_results.sqlite") as db:
        assert db.execute(
            "SELECT COUNT(*), SUM(check_passed) FROM validation_results"
        ).fetchone() == (summary["checks"], summary["checks"])


def test_a_leaky_deidentification_fails_with_exactly_its_leaks_listed(
    validation_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "deid"
    uid_map, patid_map = _reference_deid(validation_set, out, tmp_path / "home")
    key = AnswerKey.read(validation_set / "answer_key.sqlite")
    burned = [i for i in key if i.burned_in]
    clean = [i for i in key if not i.burned_in]

    # 1. one name left in the header
    named = clean[0]
    ds = pydicom.dcmread(out / named.file_path)
    original = pydicom.dcmread(validation_set / "input" / named.file_path)
    ds.PatientName = original.PatientName
    ds.save_as(out / named.file_path, enforce_file_format=True)

    # 2. one box not hidden: put the original pixels of that box back
    boxed = burned[0]
    box_answer = next(a for a in boxed.answers if a.action == "pixels_hidden")
    x, y, w, h = box_answer.box or (0, 0, 0, 0)
    ds = pydicom.dcmread(out / boxed.file_path)
    source = pydicom.dcmread(validation_set / "input" / boxed.file_path)
    frames = [np.array(f, copy=True) for f in iter_frames(ds)]
    before = list(iter_frames(source))
    frames[box_answer.frame or 0][y : y + h, x : x + w] = before[box_answer.frame or 0][
        y : y + h, x : x + w
    ]
    encode_frames(ds, frames, describe_pixels(ds))
    ds.save_as(out / boxed.file_path, enforce_file_format=True)

    # 3. one clean frame altered (one pixel)
    altered = clean[1]
    ds = pydicom.dcmread(out / altered.file_path)
    frames = [np.array(f, copy=True) for f in iter_frames(ds)]
    frames[0][5, 5] = frames[0][5, 5] ^ 1
    encode_frames(ds, frames, describe_pixels(ds))
    ds.save_as(out / altered.file_path, enforce_file_format=True)

    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out),
            "--answer-key",
            str(validation_set / "answer_key.json"),
            "--uid-map",
            str(uid_map),
            "--patid-map",
            str(patid_map),
            "-q",
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith("score: ")
    assert "score: 100.00%" not in result.output
    with (tmp_path / "deid.evaluation" / "failures.csv").open() as fp:
        failures = {
            (row["input_file"], row["action"], row["tag"], row["frame"])
            for row in csv.DictReader(fp)
        }
    assert failures == {
        (named.file_path, "text_removed", "(0010,0010)", ""),
        (boxed.file_path, "pixels_hidden", "(7FE0,0010)", str(box_answer.frame)),
        (altered.file_path, "pixels_retained", "(7FE0,0010)", "0"),
    }
    family = str(original.PatientName).split("^")[0]
    assert family not in result.output.upper()  # no value read from the outputs is printed


def test_held_and_missing_instances_pass_removals_and_fail_retentions(
    validation_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "deid"
    uid_map, patid_map = _reference_deid(validation_set, out, tmp_path / "home")
    key = AnswerKey.read(validation_set / "answer_key.sqlite")
    held, gone = key.instances[0], key.instances[1]
    quarantine = tmp_path / "deid.quarantine" / "uncertain_score"
    quarantine.mkdir(parents=True)
    shutil.copy(validation_set / "input" / held.file_path, quarantine / "held.dcm")
    (out / held.file_path).unlink()
    (out / gone.file_path).unlink()
    evaluation = evaluate(
        out, key, uid_map=read_mapping(uid_map), patid_map=read_mapping(patid_map)
    )
    assert evaluation.instances == {"released": 6, "quarantined": 1, "missing": 1}
    for instance, status in ((held, "quarantined"), (gone, "missing")):
        checks = [c for c in evaluation.checks if c.input_file == instance.file_path]
        assert checks and all(c.status == status for c in checks)
        for check in checks:
            removal = check.action in (
                "text_removed",
                "date_shifted",
                "uid_changed",
                "pixels_hidden",
            )
            assert check.passed is removal, check
    assert all(c.passed for c in evaluation.checks if c.status == "released")
    page = write_report(evaluation, tmp_path / "report", input_dir=validation_set / "input")
    assert "quarantined 1" in page.read_text()


def test_bad_keys_and_mappings_are_refused_with_what_to_do(tmp_path: Path) -> None:
    not_a_key = tmp_path / "k.sqlite"
    sqlite3.connect(not_a_key).execute("CREATE TABLE other (x)").connection.commit()
    with pytest.raises(AnswerKeyError, match="answer_data"):
        AnswerKey.read(not_a_key)
    with pytest.raises(AnswerKeyError, match="no such answer key"):
        AnswerKey.read(tmp_path / "missing.sqlite")
    bad_map = tmp_path / "map.csv"
    bad_map.write_text("old,new\n1,2\n")
    with pytest.raises(EvaluationError, match="id_old and id_new"):
        read_mapping(bad_map)
    (tmp_path / "out").mkdir()
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "out"),
            "--answer-key",
            str(not_a_key),
            "--uid-map",
            str(bad_map),
            "--patid-map",
            str(bad_map),
        ],
    )
    assert result.exit_code == 2
    result = runner.invoke(app, ["evaluate", str(tmp_path / "out"), "--answer-key", str(not_a_key)])
    assert result.exit_code == 2
