"""A worker process that dies does not stop ``scrubber run``, and one input cannot poison it.

A decoder that crashes on one file, or the kernel's out-of-memory killer, ends a worker process
and with it the whole local pool. The run redoes every input that was in flight, each alone in a
fresh worker: an input whose worker died for another reason then finishes normally, and an input
that ends its worker again is held as ``worker_crashed`` (without a preview: rendering it in the
driver could end the driver too) while the rest of the run goes on.

The crash is real: a ``sitecustomize`` module on the workers' path makes reading the named files
SIGKILL the reading process (``poison*`` every time, ``flaky*`` only the first time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scrubber.samples import write_samples
from tests.conftest import require_ray
from tests.run_checks import check_one_place, input_names

pytestmark = pytest.mark.slow

_SITECUSTOMIZE = """
import os
import signal
from pathlib import Path

import pydicom
import pydicom.filereader

_read = pydicom.filereader.dcmread
_ONCE = Path(os.environ["CRASH_TEST_MARKERS"])


def dcmread(fp, *args, **kwargs):
    name = Path(str(getattr(fp, "name", fp))).name
    if name.startswith("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("flaky"):
        marker = _ONCE / name
        if not marker.exists():
            marker.write_text("died once")
            os.kill(os.getpid(), signal.SIGKILL)
    return _read(fp, *args, **kwargs)


pydicom.filereader.dcmread = dcmread
pydicom.dcmread = dcmread
"""


def _crash_run(tmp_path: Path, source: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a run whose processes carry the crash hook."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **os.environ,
        "SCRUBBER_HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join([str(hook), str(Path.cwd())]),
        "CRASH_TEST_MARKERS": str(markers),
    }
    command = [
        sys.executable, "-m", "scrubber", "run", str(source), "--out", str(tmp_path / "out"),
        "-p", "CRASH", "-j", "2", "-q", "--report", str(tmp_path / "report.jsonl"),
    ]  # fmt: skip
    return command, env


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_crashing_input_is_held_and_the_run_goes_on(tmp_path: Path, engine: str) -> None:
    if engine == "ray":
        require_ray()
    source, out = tmp_path / "in", tmp_path / "out"
    write_samples(source, patients=1, seed=9)
    clean = sorted(p for p in source.rglob("*.dcm"))
    assert len(clean) >= 4
    shutil.copy(clean[0], source / "poison.dcm")
    shutil.copy(clean[1], source / "flaky.dcm")
    command, env = _crash_run(tmp_path, source)
    command += ["--engine", engine]
    markers, report = tmp_path / "markers", tmp_path / "report.jsonl"
    run = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)

    assert run.returncode == 1, run.stderr[-3000:]  # something is in the quarantine
    assert "died" in run.stderr
    assert (markers / "flaky.dcm").exists()  # the flaky input did end a worker once
    quarantine = tmp_path / "out.quarantine"
    rows = {r["input"]: r for r in check_one_place(source, out, quarantine, report)}
    assert len(rows) == len(input_names(source))
    assert rows["poison.dcm"]["outcome"] == "quarantined"
    assert rows["poison.dcm"]["reasons"] == ["worker_crashed"]
    held = quarantine / "worker_crashed" / "poison.dcm"
    assert held.read_bytes() == (source / "poison.dcm").read_bytes()
    note = json.loads(held.with_name("poison.dcm.json").read_text())
    assert note["reason"] == "worker_crashed" and note["digest"]
    assert not held.with_name("poison.dcm.png").exists()
    assert rows["flaky.dcm"]["outcome"] == "clean"  # redone alone, it finished
    others = [name for name in rows if name != "poison.dcm"]
    assert all(rows[name]["outcome"] in ("clean", "scrubbed") for name in others), rows

    rerun = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 1, rerun.stderr[-3000:]
    assert "already done" in rerun.stderr  # held inputs count as done: no crash loop
    assert "died" not in rerun.stderr


def test_workers_dying_whatever_the_input_stop_the_run_and_hold_nothing(tmp_path: Path) -> None:
    """Not one input's fault: three in a row, each alone, and the run stops for a person."""
    source = tmp_path / "in"
    write_samples(source, patients=1, seed=9)
    for index, path in enumerate(sorted(source.rglob("*.dcm"))):
        path.rename(path.with_name(f"poison{index}.dcm"))
    command, env = _crash_run(tmp_path, source)
    run = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)

    assert run.returncode == 2, run.stderr[-3000:]
    assert "in a row" in run.stderr
    quarantine = tmp_path / "out.quarantine"
    assert not [p for p in quarantine.rglob("*") if p.is_file()]  # nobody's file is blamed
    assert not [p for p in (tmp_path / "out").rglob("*.dcm")]


_BROKEN_OCR = """
from scrubber.detect import ocr_rapid


def _refuse(self, threads=None):
    raise RuntimeError("the recogniser's model file is damaged")


ocr_rapid.RapidOcrEngine.__init__ = _refuse
"""


def test_an_ocr_engine_failing_to_load_in_the_workers_stops_the_run(tmp_path: Path) -> None:
    """The driver's check passes, the workers' load fails: the run stops, blaming no input."""
    source = tmp_path / "in"
    write_samples(source, patients=1, seed=9)  # its ultrasound cine always goes through OCR
    command, env = _crash_run(tmp_path, source)
    (tmp_path / "hook" / "sitecustomize.py").write_text(_BROKEN_OCR)
    run = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)

    assert run.returncode == 2, run.stderr[-3000:]
    assert "could not be loaded" in run.stderr and "damaged" not in run.stderr
    quarantine = tmp_path / "out.quarantine"
    assert not [p for p in quarantine.rglob("*") if p.is_file()]  # nobody's file is blamed
    assert not [p for p in tmp_path.rglob(".*.tmp")]
