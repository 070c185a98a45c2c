"""``scrubber run`` end to end: every input in exactly one place, resumable, killable.

The kill test starts a real run over a few hundred files in a subprocess, SIGKILLs its whole
process group mid-way, reruns the same command, and checks that the ledger, the report and the
two trees agree, that nothing is duplicated or missing, and that no temporary file is left.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.samples import write_samples
from tests.burned_in import ultrasound_with_banner
from tests.conftest import require_ray
from tests.run_checks import check_one_place, input_names

runner = CliRunner()

pytestmark = pytest.mark.slow


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    write_samples(source, patients=1, seed=5)
    banner = ultrasound_with_banner("MILLER ROSE", "8812345")
    (source / "us").mkdir()
    banner.save_as(source / "us" / "banner.dcm", enforce_file_format=True)
    (source / "notes.txt").write_text("not an image")
    (source / "broken.dcm").write_bytes(b"DICM" * 40)
    return source


def _env(tmp_path: Path) -> dict[str, str]:
    return {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def test_run_puts_every_input_in_exactly_one_place(tree: Path, tmp_path: Path) -> None:
    out, report, summary = tmp_path / "out", tmp_path / "report.jsonl", tmp_path / "sum.json"
    quarantine = tmp_path / "out.quarantine"
    args = ["run", str(tree), "--out", str(out), "-p", "TRIAL", "-j", "1"]
    result = runner.invoke(
        app, [*args, "--report", str(report), "--summary", str(summary)], env=_env(tmp_path)
    )
    assert result.exit_code == 1, result.output  # something is quarantined
    rows = check_one_place(tree, out, quarantine, report)
    by_name = {r["input"]: r for r in rows}
    assert by_name["notes.txt"]["outcome"] == "skipped"
    assert by_name["broken.dcm"]["outcome"] == "quarantined"
    assert by_name["broken.dcm"]["reasons"] == ["unreadable"]
    assert by_name["us/banner.dcm"]["outcome"] == "scrubbed"
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o700
    assert stat.S_IMODE((quarantine / "unreadable").stat().st_mode) == 0o700
    note = json.loads((quarantine / "unreadable" / "broken.dcm.json").read_text())
    assert note["reason"] == "unreadable" and note["versions"]["policy"] == "all"
    assert (quarantine / "unreadable" / "broken.dcm").read_bytes() == b"DICM" * 40
    data = json.loads(summary.read_text())
    assert sum(data["counts"].values()) == len(rows)
    assert data["frames"] > 0 and data["stage_frames_per_second"]["classify"] > 0
    assert "MILLER" not in result.output and "8812345" not in result.output
    scrubbed = pydicom.dcmread(by_name["us/banner.dcm"]["output"])
    assert scrubbed.PatientName != "MILLER^ROSE" and scrubbed.BurnedInAnnotation == "NO"


def test_a_rerun_skips_what_is_done_and_redoes_what_changed(tree: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    args = ["run", str(tree), "--out", str(out), "-p", "TRIAL", "-j", "1", "-q"]
    runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    first = report.read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    assert "already done" in again.output
    assert report.read_text() == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    # the broken file is repaired: it is redone, leaves the quarantine and reaches the output
    shutil.copyfile(tree / "us" / "banner.dcm", tree / "broken.dcm")
    fixed = runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    assert fixed.exit_code == 0, fixed.output
    rows = check_one_place(tree, out, tmp_path / "out.quarantine", report)
    assert {r["input"]: r["outcome"] for r in rows}["broken.dcm"] == "scrubbed"
    assert not (tmp_path / "out.quarantine" / "unreadable" / "broken.dcm.json").exists()


def test_uid_layout_files_outputs_by_their_de_identified_uids(tree: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    args = ["run", str(tree), "--out", str(out), "-p", "TRIAL", "-j", "1", "-q"]
    runner.invoke(app, [*args, "--layout", "uids", "--report", str(report)], env=_env(tmp_path))
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    released = [r for r in rows if r["outcome"] in ("clean", "scrubbed")]
    assert released
    for row in released:
        path = Path(row["output"])
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert path.relative_to(out).parts == (
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            f"{ds.SOPInstanceUID}.dcm",
        )
    originals = {pydicom.dcmread(p, force=True).get("SOPInstanceUID") for p in tree.rglob("*.dcm")}
    assert not originals & {Path(r["output"]).stem for r in released}


def test_settings_cannot_change_under_a_started_output(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", str(tree), "--out", str(out), "-p", "TRIAL", "-j", "1", "-q"]
    runner.invoke(app, args, env=_env(tmp_path))
    result = runner.invoke(app, [*args, "--policy", "phi"], env=_env(tmp_path))
    assert result.exit_code == 2 and "policy" in result.output


@pytest.mark.parametrize(
    ("out_name", "quarantine_name", "message"),
    [("in/out", None, "overlaps"), ("out", "out/q", "overlaps")],
)
def test_overlapping_folders_are_refused(
    tree: Path, tmp_path: Path, out_name: str, quarantine_name: str | None, message: str
) -> None:
    args = ["run", str(tree), "--out", str(tmp_path / out_name), "-p", "TRIAL", "-q"]
    if quarantine_name:
        args += ["--quarantine", str(tmp_path / quarantine_name)]
    result = runner.invoke(app, args, env=_env(tmp_path))
    assert result.exit_code == 2 and message in result.output


def test_a_second_run_into_the_same_output_is_refused(tree: Path, tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "out"
    lock = tmp_path / "out.ledger.sqlite.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = runner.invoke(
            app, ["run", str(tree), "--out", str(out), "-p", "TRIAL", "-q"], env=_env(tmp_path)
        )
    assert result.exit_code == 2 and "Another scrubber run" in result.output


def _kill_tree(root: Path, copies: int) -> None:
    write_samples(root / "samples", patients=1, seed=9)
    ct = next(
        p
        for p in sorted((root / "samples").rglob("*.dcm"))
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"
    )
    for index in range(copies):
        folder = root / f"series{index // 50:02d}"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(ct, folder / f"IM{index:04d}.dcm")
    for index in range(4):
        banner = ultrasound_with_banner(f"PATIENT{index} NAME", f"ID{index}77")
        banner.save_as(root / f"banner{index}.dcm", enforce_file_format=True)
    (root / "README").write_text("export notes")
    (root / "truncated.dcm").write_bytes(b"\0" * 128 + b"DICM")


def test_a_run_killed_mid_way_and_rerun_loses_nothing(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    _kill_tree(source, copies=300)
    total = len(input_names(source))
    ledger = tmp_path / "out.ledger.sqlite"
    report = tmp_path / "report.jsonl"
    command = [
        sys.executable, "-m", "scrubber", "run", str(source), "--out", str(out),
        "-p", "KILL", "-j", "2", "-q", "--report", str(report),
    ]  # fmt: skip
    env = {**os.environ, **_env(tmp_path)}
    process = subprocess.Popen(
        command, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if ledger.exists():
            try:
                with sqlite3.connect(ledger, timeout=1) as db:
                    done = db.execute(
                        "SELECT COUNT(*) FROM inputs WHERE state = 'done'"
                    ).fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= total // 3:
                break
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < done < total
    rerun = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 1, rerun.stderr  # the truncated file is quarantined
    assert "already done" in rerun.stderr
    rows = check_one_place(source, out, tmp_path / "out.quarantine", report)
    assert len(rows) == total
    outcomes = {r["input"]: r["outcome"] for r in rows}
    assert outcomes["README"] == "skipped" and outcomes["truncated.dcm"] == "quarantined"
    assert all(outcomes[f"banner{i}.dcm"] == "scrubbed" for i in range(4))
    for row in rows:
        if row["outcome"] in ("clean", "scrubbed"):
            pydicom.dcmread(row["output"])  # complete, parseable files only


def _digests(root: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_local_and_ray_engines_give_identical_outputs(tree: Path, tmp_path: Path) -> None:
    require_ray()
    key = tmp_path / "key.sqlite"  # one project key: the same pseudonyms on both sides
    common = ["-p", "TRIAL", "--key-file", str(key), "-q", "-j", "2"]
    local = runner.invoke(
        app, ["run", str(tree), "--out", str(tmp_path / "local"), *common], env=_env(tmp_path)
    )
    assert local.exit_code == 1, local.output
    on_ray = runner.invoke(
        app,
        ["run", str(tree), "--out", str(tmp_path / "ray"), *common, "--engine", "ray"],
        env=_env(tmp_path),
    )
    assert on_ray.exit_code == 1, on_ray.output
    # ray.shutdown() leaves Popen objects of Ray's own processes, still exiting, to the garbage
    # collector: collect them here, quietly, not during whichever test runs next (a
    # ResourceWarning there is an error under filterwarnings=error)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    local_files, ray_files = _digests(tmp_path / "local"), _digests(tmp_path / "ray")
    assert len(local_files) >= 5 and local_files == ray_files
    held = {"local": tmp_path / "local.quarantine", "ray": tmp_path / "ray.quarantine"}
    assert _digests(held["local"]).keys() == _digests(held["ray"]).keys()


def test_an_output_that_cannot_be_written_is_retried_by_the_next_run(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full while renaming one input's files: it is reported failed, not done, nothing of
    it is left, and the next run (disk fine again) finishes it."""
    from scrubber.errors import OutputError
    from scrubber.runner import batch

    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    args = ["run", str(tree), "--out", str(out), "-p", "TRIAL", "-j", "1", "-q"]
    real = batch.commit_staged  # type: ignore[attr-defined]
    calls = {"n": 0}

    def full_disk(staged: list[tuple[Path, Path]]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OutputError("No space left on device")
        real(staged)

    monkeypatch.setattr(batch, "commit_staged", full_disk)
    first = runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    assert first.exit_code == 1 and "could not be written" in first.output
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert len(failed) == 1 and len(rows) == len(input_names(tree))
    assert not (out / failed[0]["input"]).exists()
    monkeypatch.setattr(batch, "commit_staged", real)
    second = runner.invoke(app, [*args, "--report", str(report)], env=_env(tmp_path))
    assert second.exit_code == 1, second.output  # broken.dcm stays held
    check_one_place(tree, out, tmp_path / "out.quarantine", report)


def test_cuda_asked_for_without_a_gpu_is_refused_before_any_work(
    tree: Path, tmp_path: Path
) -> None:
    import onnxruntime  # type: ignore[import-untyped]

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA execution provider")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["run", str(tree), "--out", str(out), "-p", "TRIAL", "--device", "cuda"],
        env=_env(tmp_path),
    )
    assert result.exit_code == 2 and "CUDA execution provider" in result.output
    assert not out.exists() and not (tmp_path / "out.ledger.sqlite").exists()
