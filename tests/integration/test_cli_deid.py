"""``scrubber deid`` and ``scrubber keys`` end to end, as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from scrubber.cli.app import app
from scrubber.samples import iter_sample_instances, write_samples
from tests.phi_scan import leaks, read

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    write_samples(source, patients=2, seed=1)
    (source / "README.txt").write_text("not an image")
    (source / "patient01" / "broken.dcm").write_bytes(b"\x08\x00\x05\x00CS\x0a\x00ISO")
    dicomdir = get_testdata_file("DICOMDIR", read=False)
    assert isinstance(dicomdir, str)
    shutil.copy(dicomdir, source / "DICOMDIR")
    return source


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUBBER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SCRUBBER_SECRET", raising=False)


def test_folder_tree_is_mirrored_and_failures_do_not_stop_the_batch(
    tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = tmp_path / "report.jsonl"
    code, output = _run(
        "deid", str(tree), str(out), "--project", "ILIAC_CT", "--report", str(report)
    )
    assert code == 1, output  # one broken file
    inputs = sorted(p.relative_to(tree) for p in tree.rglob("*.dcm"))
    outputs = sorted(p.relative_to(out) for p in out.rglob("*.dcm"))
    assert outputs == [p for p in inputs if p.name != "broken.dcm"]
    assert not list(out.rglob("*.tmp")) and not (out / "README.txt").exists()
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    status = {Path(line["input"]).relative_to(tree): line["status"] for line in lines}
    assert len(status) == len(inputs) + 2
    assert status[Path("DICOMDIR")] == "skipped" and not (out / "DICOMDIR").exists()
    assert status[Path("patient01/broken.dcm")] == "failed"
    assert status[Path("README.txt")] == "skipped"
    assert sum(s == "deidentified" for s in status.values()) == len(outputs)
    assert "failed" in output and "broken.dcm" in output
    for rel in outputs:
        assert leaks(read(tree / rel), out / rel) == []
        ds = pydicom.dcmread(out / rel)
        assert str(ds.PatientName) in ("ILIAC_CT_001", "ILIAC_CT_002")
        assert ds.PixelData == pydicom.dcmread(tree / rel).PixelData
    key = tmp_path / "home" / "projects" / "ILIAC_CT" / "reid-key.sqlite"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_same_secret_same_bytes_and_different_secret_different_uids(
    tree: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-project-secret-of-some-length\n")
    secret.chmod(0o600)
    runs = {}
    for name, env_secret in (("a", None), ("b", None), ("c", "another-secret-for-this-run")):
        key = tmp_path / f"key-{name}.sqlite"
        args = ["deid", str(tree), str(tmp_path / name), "-p", "P", "--key-file", str(key)]
        env = None
        if env_secret is None:
            args += ["--secret-file", str(secret)]
        else:
            env = {"SCRUBBER_SECRET": env_secret}
        code, output = _run(*args, env=env)
        assert code == 1, output
        runs[name] = {
            p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.dcm")
        }
    assert runs["a"] == runs["b"]
    rel = next(iter(runs["a"]))
    uid_a = pydicom.dcmread(tmp_path / "a" / rel).StudyInstanceUID
    uid_c = pydicom.dcmread(tmp_path / "c" / rel).StudyInstanceUID
    assert uid_a != uid_c


def test_generated_secret_is_reused_so_reruns_are_identical(tree: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    _, output = _run("deid", str(tree), str(first), "-p", "P2")
    assert "new project secret was generated" in output
    _, output = _run("deid", str(tree), str(tmp_path / "second"), "-p", "P2")
    assert "new project secret" not in output
    for path in first.rglob("*.dcm"):
        assert path.read_bytes() == (tmp_path / "second" / path.relative_to(first)).read_bytes()


def test_single_file_and_key_export(tree: Path, tmp_path: Path) -> None:
    source = next(tree.rglob("IM0001.dcm"))
    original = pydicom.dcmread(source)
    code, output = _run("deid", str(source), str(tmp_path / "one.dcm"), "-p", "SOLO")
    assert code == 0, output
    assert pydicom.dcmread(tmp_path / "one.dcm").PatientID == "SOLO_001"
    export = tmp_path / "patids.csv"
    code, output = _run(
        "keys", "export", "-p", "SOLO", "--kind", "patient_id", "--out", str(export)
    )
    assert code == 0, output
    with export.open() as fp:
        rows = list(csv.reader(fp))
    assert rows == [["id_old", "id_new"], [original.PatientID, "SOLO_001"]]
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    code, output = _run("keys", "export", "-p", "SOLO", "--kind", "uid")
    assert original.StudyInstanceUID in output
    code, output = _run("keys", "info", "-p", "SOLO")
    assert code == 0 and "patients" in output and original.PatientID not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--option", "retain-long-full-dates"], "exclude each other"),
        (["--keep-private", "nonsense"], "CREATOR,gggg,xx"),
        (["-p", "bad name"], "project name"),
    ],
)
def test_configuration_errors_exit_2_with_a_clear_message(
    tree: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["deid", str(tree), str(tmp_path / "out"), "-p", "OK"]
    code, output = _run(*base, *args)
    assert code == 2
    assert message in " ".join(output.split())
    assert not (tmp_path / "out").exists()


def test_output_inside_input_and_key_inside_output_are_refused(tree: Path, tmp_path: Path) -> None:
    code, output = _run("deid", str(tree), str(tree / "out"), "-p", "P")
    assert code == 2 and "overlaps" in output
    out = tmp_path / "out"
    code, output = _run("deid", str(tree), str(out), "-p", "P", "--key-file", str(out / "k.sqlite"))
    assert code == 2 and "inside the output" in " ".join(output.split())
    assert not out.exists()


def test_errors_and_logs_carry_no_header_values(tmp_path: Path) -> None:
    source = tmp_path / "in"
    rel, ds, patient = next(iter(iter_sample_instances(patients=1, seed=9)))
    ds.add_new(0x00420011, "OB", b"%PDF-1.4")  # an encapsulated document: refused
    from scrubber.dicom_io import write_instance

    write_instance(ds, source / rel)
    report = tmp_path / "r.jsonl"
    code, output = _run(
        "deid", str(source), str(tmp_path / "out"), "-p", "P", "--report", str(report)
    )
    assert code == 1
    everything = output + report.read_text()
    for value in patient.identifying_values():
        assert value not in everything
    assert "unsupported_content" in report.read_text()


def test_console_script_runs_as_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "SCRUBBER_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "scrubber", "samples", str(tmp_path / "s"), "--patients", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scrubber",
            "deid",
            str(tmp_path / "s"),
            str(tmp_path / "o"),
            "-p",
            "X",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "deidentified" in done.stderr
    assert len(list((tmp_path / "o").rglob("*.dcm"))) == 6
