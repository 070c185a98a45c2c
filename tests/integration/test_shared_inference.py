"""``scrubber run --inference shared``: the GPU layout, exercised on the CPU.

One inference process holds the models and serves every worker; the outputs must be exactly
those of workers holding their own models, and the process dying mid-run must stop the run
without blaming any input, leaving the next run to finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.samples import write_samples
from tests.burned_in import ultrasound_with_banner
from tests.run_checks import check_one_place, input_names

runner = CliRunner()

pytestmark = pytest.mark.slow


def _tree(source: Path, ct_copies: int = 0) -> Path:
    write_samples(source, patients=1, seed=5)
    banner = ultrasound_with_banner("MILLER ROSE", "8812345")
    (source / "us").mkdir()
    banner.save_as(source / "us" / "banner.dcm", enforce_file_format=True)
    (source / "broken.dcm").write_bytes(b"DICM" * 40)
    ct = next(
        p
        for p in sorted(source.rglob("*.dcm"))
        if p.name != "broken.dcm" and pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"
    )
    for index in range(ct_copies):
        shutil.copyfile(ct, source / f"copy{index:03d}.dcm")
    return source


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_shared_inference_gives_the_outputs_of_workers_with_their_own_models(
    tmp_path: Path,
) -> None:
    source = _tree(tmp_path / "in")
    env = {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    key = tmp_path / "key.sqlite"
    common = ["-p", "TRIAL", "--key-file", str(key), "-q"]
    summaries = {}
    # shared-1: one worker, the driver itself, served by the inference process
    for mode, workers in (("worker", "2"), ("shared", "2"), ("shared-1", "1")):
        summary = tmp_path / f"{mode}.json"
        result = runner.invoke(
            app,
            ["run", str(source), "--out", str(tmp_path / mode), *common, "-j", workers,
             "--inference", mode.split("-")[0], "--summary", str(summary)],
            env=env,
        )  # fmt: skip
        assert result.exit_code == 1, result.output  # broken.dcm is held
        summaries[mode] = json.loads(summary.read_text())
    assert _digests(tmp_path / "shared-1") == _digests(tmp_path / "worker")
    assert summaries["shared-1"]["inference"][0]["frames"] > 0
    worker, shared = _digests(tmp_path / "worker"), _digests(tmp_path / "shared")
    assert len(worker) >= 5 and worker == shared
    held_worker = _digests(tmp_path / "worker.quarantine")
    held_shared = _digests(tmp_path / "shared.quarantine")
    assert held_worker.keys() == held_shared.keys() and held_worker
    notes = [name for name in held_worker if name.endswith(".json")]
    for name in notes:  # the same decision, scores and boxes: only timings may differ
        a = json.loads((tmp_path / "worker.quarantine" / name).read_text())
        b = json.loads((tmp_path / "shared.quarantine" / name).read_text())
        assert {k: v for k, v in a.items() if "second" not in k} == {
            k: v for k, v in b.items() if "second" not in k
        }
    assert summaries["worker"]["counts"] == summaries["shared"]["counts"]
    assert summaries["worker"]["inference"] == []
    (stats,) = summaries["shared"]["inference"]
    assert stats["device"] == "cpu" and stats["frames"] >= summaries["shared"]["frames"] - 1
    assert stats["ocr_reads"] >= 1  # the banner was read there
    assert stats["batches"] <= stats["requests"]


def test_shared_inference_with_ray_is_refused(tmp_path: Path) -> None:
    source = _tree(tmp_path / "in")
    result = runner.invoke(
        app,
        ["run", str(source), "--out", str(tmp_path / "out"), "-p", "T", "--engine", "ray",
         "--inference", "shared"],
        env={"SCRUBBER_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.exit_code == 2 and "--inference worker" in result.output
    assert not (tmp_path / "out.ledger.sqlite").exists()


#: Ends the inference process (the only one running the classifier: its input is named
#: ``frames``) at its fourth batch, once (a marker file remembers).
_SITECUSTOMIZE = """
import os
import signal
from pathlib import Path

import onnxruntime

_run = onnxruntime.InferenceSession.run
_MARKER = Path(os.environ["INFERENCE_KILL_MARKER"])
_calls = [0]


def run(self, output_names, input_feed, *args, **kwargs):
    if "frames" in input_feed and not _MARKER.exists():
        _calls[0] += 1
        if _calls[0] == 4:
            _MARKER.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
    return _run(self, output_names, input_feed, *args, **kwargs)


onnxruntime.InferenceSession.run = run
"""


def test_an_inference_process_that_dies_stops_the_run_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    source, out = _tree(tmp_path / "in", ct_copies=24), tmp_path / "out"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    marker, report = tmp_path / "killed", tmp_path / "report.jsonl"
    env = {**os.environ, "SCRUBBER_HOME": str(tmp_path / "home")}
    command = [
        sys.executable, "-m", "scrubber", "run", str(source), "--out", str(out),
        "-p", "GONE", "-j", "2", "-q", "--inference", "shared", "--report", str(report),
    ]  # fmt: skip
    hooked = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(hook), str(Path.cwd())]),
        "INFERENCE_KILL_MARKER": str(marker),
    }
    first = subprocess.run(command, check=False, env=hooked, capture_output=True, text=True)
    assert marker.exists(), first.stderr[-3000:]
    assert first.returncode == 2, first.stderr[-3000:]
    assert "inference process is gone" in first.stderr
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    unfinished = [r for r in rows if r["reasons"] == ["not_finished"]]
    assert unfinished  # left for the next run, not held
    assert not [r for r in rows if r["outcome"] == "quarantined" and r["input"] != "broken.dcm"]
    assert not list(out.rglob(".*.tmp"))

    rerun = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    assert rerun.returncode == 1, rerun.stderr[-3000:]  # broken.dcm is held
    rows = check_one_place(source, out, tmp_path / "out.quarantine", report)
    assert len(rows) == len(input_names(source))
    outcomes = {r["input"]: r["outcome"] for r in rows}
    assert outcomes["broken.dcm"] == "quarantined" and outcomes["us/banner.dcm"] == "scrubbed"
    assert all(outcomes[f"copy{i:03d}.dcm"] == "clean" for i in range(24))
