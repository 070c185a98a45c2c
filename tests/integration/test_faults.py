"""Faults during ``scrubber run``: each ends in a clear state with nothing lost.

Disk full (while encoding an output, while flushing it, while copying into the quarantine), a
read-only output or quarantine, a ledger locked by another program, a worker killed in the middle
of an instance, an OCR backend that raises: after each, every input is in exactly one place or
left, with nothing of it under a final name, for the next run, which finishes it; the messages say
what happened without quoting any header value.

Running as root ignores file permissions, so there the read-only cases are simulated by making
the file system calls fail with ``EACCES``, as a read-only folder makes them fail for anyone else.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner, Result

from scrubber.cli.app import app
from scrubber.detect.ocr import ENGINES, TextRegion, register_engine
from scrubber.runner import batch
from scrubber.samples import build_instance, sample_patients, write_samples
from tests.burned_in import ultrasound_with_banner
from tests.run_checks import check_one_place, input_names

pytestmark = pytest.mark.slow

runner = CliRunner()
CANARY = "QZVFAULT77"


class _Quiet:
    """An OCR engine that finds no text (fast; the faults, not the reading, are under test)."""

    name = "quiet"
    max_side = 4096

    def read(self, view: np.ndarray) -> list[TextRegion]:
        return []


class _Exploding:
    """An OCR engine whose backend raises, quoting what it read (as real backends may)."""

    name = "exploding"
    max_side = 4096

    def read(self, view: np.ndarray) -> list[TextRegion]:
        raise RuntimeError(f"recogniser failed on line {CANARY!r}")


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    register_engine("quiet", lambda threads=None: _Quiet())
    register_engine("exploding", lambda threads=None: _Exploding())
    yield
    for name in ("quiet", "exploding"):
        ENGINES.pop(name, None)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Four CT instances (released), one broken file (held) and a text file (skipped)."""
    source = tmp_path / "in"
    source.mkdir()
    patients = sample_patients(2, seed=4)
    for index in range(4):
        ds = build_instance(patients[index % 2], modality="CT", seed=index)
        ds.PatientName = f"{CANARY}^{index}"
        ds.save_as(source / f"ct{index}.dcm", enforce_file_format=True)
    (source / "broken.dcm").write_bytes(b"DICM" * 40)
    (source / "notes.txt").write_text("not an image")
    return source


def _env(tmp_path: Path) -> dict[str, str]:
    return {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def _run(tmp_path: Path, source: Path, *extra: str, ocr: str = "quiet") -> Result:
    args = ["run", str(source), "--out", str(tmp_path / "out"), "-p", "FAULT", "-j", "1", "-q"]
    args += ["--ocr", ocr, "--report", str(tmp_path / "report.jsonl"), *extra]
    return runner.invoke(app, args, env=_env(tmp_path))


def _rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    lines = (tmp_path / "report.jsonl").read_text().splitlines()
    return {row["input"]: row for row in map(json.loads, lines)}


def _finals(root: Path) -> set[str]:
    """Files under their final names (temporaries excluded)."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".tmp")
    }


def _check_left_for_the_next_run(tmp_path: Path, source: Path, failed: set[str]) -> None:
    """The failed inputs have nothing under a final name and are not done; the rest are."""
    rows = _rows(tmp_path)
    assert set(rows) == set(input_names(source))
    assert {name for name, row in rows.items() if row["outcome"] == "failed"} == failed
    out, quarantine = tmp_path / "out", tmp_path / "out.quarantine"
    held = {name.split("/", 1)[1] for name in _finals(quarantine) if "/" in name}
    for name in failed:
        assert name not in _finals(out) and name not in held
    assert [p for root in (out, quarantine) for p in root.rglob(".*.tmp")] == []
    with sqlite3.connect(tmp_path / "out.ledger.sqlite") as db:
        states = dict(db.execute("SELECT input, state FROM inputs").fetchall())
    assert {name for name, state in states.items() if state != "done"} == failed


def _finish_and_check(tmp_path: Path, source: Path) -> list[dict[str, Any]]:
    again = _run(tmp_path, source)
    assert again.exit_code == 1, again.output  # broken.dcm stays held
    rows = check_one_place(source, tmp_path / "out", tmp_path / "out.quarantine", _report(tmp_path))
    assert {r["input"]: r["outcome"] for r in rows}["broken.dcm"] == "quarantined"
    return rows


def _report(tmp_path: Path) -> Path:
    return tmp_path / "report.jsonl"


def _nth(count: int, fault: Callable[[], BaseException]) -> Callable[..., Any]:
    """A wrapper factory failing the ``count``-th call with ``fault()``."""

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        calls = {"n": 0}

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == count:
                raise fault()
            return real(*args, **kwargs)

        return wrapped

    return wrap


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eacces() -> OSError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES))


# ---------------------------------------------------------------------------------------------
# disk full


@pytest.mark.parametrize(
    "where",
    [
        "scrubber.dicom_io.files._encode",  # writing the output's bytes
        "scrubber.runner.batch.flush_file",  # flushing the staged output to disk
        "shutil.copyfileobj",  # copying an original into the quarantine
    ],
)
def test_a_full_disk_leaves_the_input_for_the_next_run(
    where: str,
    tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ENOSPC anywhere while an input's files are written: that input is reported ``failed``,
    nothing of it is left under a final name or as a temporary, the run goes on with the others,
    and the next run (disk fine again) finishes it."""
    module_name, _, attribute = where.rpartition(".")
    module = importlib.import_module(module_name)
    holds = "copyfileobj" in where  # only broken.dcm is copied into the quarantine
    monkeypatch.setattr(
        module, attribute, _nth(1 if holds else 2, _enospc)(getattr(module, attribute))
    )
    with caplog.at_level(logging.INFO):
        first = _run(tmp_path, tree)
    monkeypatch.undo()
    assert first.exit_code == 1, first.output
    assert "could not be written" in first.output and "rerunning" in first.output
    _check_left_for_the_next_run(tmp_path, tree, {"broken.dcm"} if holds else {"ct1.dcm"})
    assert "ENOSPC" in caplog.text or "No space left" in caplog.text
    assert CANARY not in first.output + caplog.text
    _finish_and_check(tmp_path, tree)


# ---------------------------------------------------------------------------------------------
# read-only output and quarantine


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Callable[[], None]:
    """Make ``folder`` refuse new files; return how to undo it.

    Not root: ``chmod 0500``. Root ignores permissions, so file creation and folder creation
    under ``folder`` are made to fail with ``EACCES`` instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return lambda: folder.chmod(0o700)
    real_mkstemp, real_mkdir = tempfile.mkstemp, os.mkdir

    def under(path: object) -> bool:
        resolved = Path(str(path)).resolve()
        return resolved == folder.resolve() or folder.resolve() in resolved.parents

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if under(kwargs.get("dir", "")):
            raise _eacces()
        return real_mkstemp(*args, **kwargs)

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if under(path) and Path(str(path)).resolve() != folder.resolve():
            raise _eacces()
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return monkeypatch.undo


def test_a_read_only_output_fails_its_inputs_and_the_next_run_finishes(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    undo = _read_only(monkeypatch, tmp_path / "out")
    with caplog.at_level(logging.INFO):
        first = _run(tmp_path, tree)
    undo()
    assert first.exit_code == 1, first.output
    assert "4 input(s) could not be written" in first.output
    released = {f"ct{i}.dcm" for i in range(4)}
    _check_left_for_the_next_run(tmp_path, tree, released)
    assert _rows(tmp_path)["broken.dcm"]["outcome"] == "quarantined"  # the quarantine works
    assert "EACCES" in caplog.text or "Permission denied" in caplog.text
    assert CANARY not in first.output + caplog.text
    rows = _finish_and_check(tmp_path, tree)
    assert {r["input"] for r in rows if r["outcome"] == "clean"} == released


def test_a_read_only_quarantine_fails_held_inputs_and_the_next_run_finishes(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out.quarantine").mkdir(mode=0o700)
    undo = _read_only(monkeypatch, tmp_path / "out.quarantine")
    first = _run(tmp_path, tree)
    undo()
    assert first.exit_code == 1, first.output
    assert "1 input(s) could not be written" in first.output
    _check_left_for_the_next_run(tmp_path, tree, {"broken.dcm"})
    _finish_and_check(tmp_path, tree)


def test_an_output_whose_parent_is_read_only_is_refused_before_any_work(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "locked"
    undo = _read_only(monkeypatch, parent)
    args = ["run", str(tree), "--out", str(parent / "out"), "-p", "FAULT", "-q", "--ocr", "quiet"]
    result = runner.invoke(app, args, env=_env(tmp_path))
    undo()
    assert result.exit_code == 2, result.output
    assert "Cannot create the output" in result.output and "Traceback" not in result.output
    assert not (parent / "out").exists()


# ---------------------------------------------------------------------------------------------
# the ledger locked by another process


def _hold_ledger(path: Path) -> subprocess.Popen[str]:
    """Another process opens the ledger and keeps a write transaction open."""
    code = (
        "import sqlite3, sys, time\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture
def short_ledger_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite waits 60 s for a lock in production; a second is enough to show the outcome."""
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = real(*args, **{**kwargs, "timeout": 1.0})
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)  # the ledger's, and everyone's here


@pytest.mark.usefixtures("short_ledger_timeout")
def test_a_ledger_locked_by_another_program_stops_the_run_cleanly(
    tree: Path, tmp_path: Path
) -> None:
    """A write lock held elsewhere (an sqlite3 shell left open): the run stops with a message that
    says so (exit 2, no traceback), nothing is half-placed, and the next run finishes."""
    first = _run(tmp_path, tree)  # creates the ledger; everything done
    assert first.exit_code == 1
    for name in ("ct0.dcm", "ct2.dcm"):  # two inputs changed: they must be redone
        os.utime(tree / name, ns=(time.time_ns(), time.time_ns()))
    holder = _hold_ledger(tmp_path / "out.ledger.sqlite")
    try:
        locked = _run(tmp_path, tree)
    finally:
        holder.communicate("", timeout=30)
    assert locked.exit_code == 2, locked.output
    assert "locked by another program" in locked.output
    assert "Traceback" not in locked.output and CANARY not in locked.output
    assert [p for p in (tmp_path / "out").rglob(".*.tmp")] == []
    rows = _finish_and_check(tmp_path, tree)
    assert len(rows) == len(input_names(tree))


def test_a_lock_taken_in_the_middle_of_a_run_stops_it_and_loses_nothing(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_ledger_timeout: None
) -> None:
    holders: list[subprocess.Popen[str]] = []
    real_commit = batch.BatchRun._commit

    def commit(self: batch.BatchRun, result: batch.WorkResult) -> Any:
        row = real_commit(self, result)
        if not holders:  # after the first input is done, another program takes the lock
            holders.append(_hold_ledger(tmp_path / "out.ledger.sqlite"))
        return row

    monkeypatch.setattr(batch.BatchRun, "_commit", commit)
    try:
        stopped = _run(tmp_path, tree)
    finally:
        for holder in holders:
            holder.communicate("", timeout=30)
    assert stopped.exit_code == 2, stopped.output
    assert "locked by another program" in stopped.output and "rerun" in stopped.output
    monkeypatch.setattr(batch.BatchRun, "_commit", real_commit)
    _finish_and_check(tmp_path, tree)


# ---------------------------------------------------------------------------------------------
# an OCR backend raising inside a worker


def test_an_ocr_backend_that_raises_holds_that_instance_and_the_run_goes_on(
    tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    banner = ultrasound_with_banner(f"{CANARY} X", "7712345")  # ultrasound: always read by OCR
    banner.save_as(tree / "us.dcm", enforce_file_format=True)
    with caplog.at_level(logging.INFO):
        result = _run(tmp_path, tree, "-v", ocr="exploding")
    assert result.exit_code == 1, result.output
    rows = check_one_place(tree, tmp_path / "out", tmp_path / "out.quarantine", _report(tmp_path))
    outcomes = {r["input"]: (r["outcome"], r["reasons"]) for r in rows}
    assert outcomes["us.dcm"] == ("quarantined", ["internal_error"])
    assert all(outcomes[f"ct{i}.dcm"][0] == "clean" for i in range(4))  # the others went on
    note = json.loads((tmp_path / "out.quarantine/internal_error/us.dcm.json").read_text())
    assert "RuntimeError" in note["message"]
    # the backend's message quoted the text it read: it reaches no log, note or output
    assert "internal error while scrubbing an instance (RuntimeError at " in caplog.text
    where = {
        "log": caplog.text,
        "output": result.output,
        "note": json.dumps(note),
        "report": _report(tmp_path).read_text(),
    }
    assert {k: v for k, v in where.items() if CANARY in v} == {}


# ---------------------------------------------------------------------------------------------
# the OCR engine: loaded only when an input needs it, and a load that fails stops the run


def test_workers_load_the_ocr_engine_only_for_inputs_that_need_it(
    tree: Path, tmp_path: Path
) -> None:
    built: list[int | None] = []

    def counting(threads: int | None = None) -> _Quiet:
        built.append(threads)
        return _Quiet()

    register_engine("counting-once", counting)
    try:
        result = _run(tmp_path, tree, ocr="counting-once")
        assert result.exit_code == 1, result.output  # broken.dcm is held
        assert {r["outcome"] for r in _rows(tmp_path).values()} >= {"clean"}
        assert built == []  # four clean CT slices: nothing to read, nothing loaded
        banner = ultrasound_with_banner(f"{CANARY} X", "7712345")  # always read by OCR
        banner.save_as(tree / "us.dcm", enforce_file_format=True)
        again = _run(tmp_path, tree, ocr="counting-once")
        assert again.exit_code == 1, again.output
        assert built == [1]
    finally:
        ENGINES.pop("counting-once", None)


def test_an_ocr_engine_that_fails_to_load_in_a_worker_stops_the_run_and_holds_nothing(
    tree: Path, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def first_load_fails(threads: int | None = None) -> _Quiet:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError(f"damaged model file near {CANARY}")
        return _Quiet()

    register_engine("fails-first", first_load_fails)
    banner = ultrasound_with_banner(f"{CANARY} X", "7712345")
    banner.save_as(tree / "us.dcm", enforce_file_format=True)
    try:
        result = _run(tmp_path, tree, ocr="fails-first")
        assert result.exit_code == 2, result.output
        assert "could not be loaded" in result.output and "RuntimeError" not in result.output
        assert CANARY not in result.output
        quarantine = tmp_path / "out.quarantine"
        assert "us.dcm" not in {p.name for p in quarantine.rglob("*")}  # not blamed on it
        assert "us.dcm" not in _finals(tmp_path / "out")
        with sqlite3.connect(tmp_path / "out.ledger.sqlite") as db:
            state = db.execute("SELECT state FROM inputs WHERE input = 'us.dcm'").fetchone()
        assert state == ("started",)  # left for the next run
        again = _run(tmp_path, tree, ocr="fails-first")  # the installation is mended
        assert again.exit_code == 1, again.output
        rows = check_one_place(tree, tmp_path / "out", quarantine, _report(tmp_path))
        outcomes = {r["input"]: (r["outcome"], r["reasons"]) for r in rows}
        # read this time (the stand-in finds no text on a banner the classifier is sure of)
        assert outcomes["us.dcm"] == ("quarantined", ["uncertain_score"])
        assert all(outcomes[f"ct{i}.dcm"][0] == "clean" for i in range(4))
    finally:
        ENGINES.pop("fails-first", None)


def test_an_ocr_engine_that_cannot_load_is_refused_before_any_work(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scrubber.detect import ocr_rapid

    monkeypatch.setitem(ocr_rapid.MODEL_FILES, "Rec", "no-such-recogniser.onnx")
    result = _run(tmp_path, tree, ocr="rapidocr")
    assert result.exit_code == 2, result.output
    assert "no-such-recogniser.onnx" in result.output
    assert not (tmp_path / "out").exists() or _finals(tmp_path / "out") == set()


# ---------------------------------------------------------------------------------------------
# a worker killed in the middle of an instance


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def test_a_worker_killed_mid_instance_does_not_stop_the_run_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """SIGKILL one worker (the OOM killer, say) while the driver lives: the driver redoes what
    the lost pool had in flight, each input alone in a fresh worker, and the run finishes every
    input exactly once; none is blamed (each finishes when redone). An input that kills its
    worker every time is held as ``worker_crashed``: tests/integration/test_worker_crash.py."""
    source, out = tmp_path / "in", tmp_path / "out"
    write_samples(source / "samples", patients=1, seed=9)
    ct = next(
        p
        for p in sorted((source / "samples").rglob("*.dcm"))
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"
    )
    for index in range(160):
        (source / f"copy{index:03d}.dcm").write_bytes(ct.read_bytes())
    ledger = tmp_path / "out.ledger.sqlite"
    report = tmp_path / "report.jsonl"
    command = [sys.executable, "-m", "scrubber", "run", str(source), "--out", str(out)]
    command += ["-p", "KILL", "-j", "2", "-q", "--report", str(report)]
    env = {**os.environ, **_env(tmp_path)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline, killed = time.monotonic() + 300, None
    while time.monotonic() < deadline and process.poll() is None and killed is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(ledger, timeout=1) as db:
                done = db.execute("SELECT COUNT(*) FROM inputs WHERE state = 'done'").fetchone()
        except sqlite3.Error:
            continue
        workers = _children(process.pid)
        if done[0] >= 5 and workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
    assert killed is not None, "the run finished before a worker could be killed"
    _stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]  # nothing held: every input finished
    assert "worker process died" in stderr and "redone one at a time" in stderr
    assert "Traceback" not in stderr
    with sqlite3.connect(ledger) as db:
        unfinished = db.execute("SELECT COUNT(*) FROM inputs WHERE state != 'done'").fetchone()
    assert unfinished[0] == 0
    rows = check_one_place(source, out, tmp_path / "out.quarantine", report)
    assert len(rows) == len(input_names(source))
    for row in rows:
        assert row["outcome"] in ("clean", "scrubbed"), row
        pydicom.dcmread(row["output"])  # complete files only


# ---------------------------------------------------------------------------------------------
# no GPU: the node runs on the CPU, a run or server asking for CUDA is refused


def test_without_a_gpu_the_classifier_of_node_and_server_falls_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime  # type: ignore[import-untyped]

    from scrubber.detect import load_classifier
    from scrubber.detect.classifier import check_device
    from scrubber.errors import ConfigError

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    classifier = load_classifier(device="auto", threads=1)  # what the node loads
    assert classifier.providers == ("CPUExecutionProvider",)
    with pytest.raises(ConfigError, match="CUDA execution provider"):
        check_device("cuda")
