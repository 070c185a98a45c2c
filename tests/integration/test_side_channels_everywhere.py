"""No PHI through side doors, with a canary in *every* free-form string of every header.

:mod:`tests.integration.test_side_channels` plants canaries in twenty well-known attributes. Here
every PN, LO, SH, LT, ST, UT, UC and AE element at every depth (private blocks and nested
sequences included) carries its own canary, the original instance UIDs count as canaries too, and
the set is built to walk every error path: clean images, text burned into the pixels (the canaries
again), an encapsulated PDF, a truncated file, undecodable RLE, a palette image without its
palette, and numeric elements whose values are canaries (pydicom's conversion messages quote
values). The set then goes through ``scrubber run`` (two worker processes, verbose log), the
review queue, the server, and the library's own entry points; logs, ledger, report, summary,
notes, audit table, server answers, metrics and every exception message are searched. Only the
quarantined originals and their previews may hold a canary. (Outputs are not searched here: the
profile keeps some strings on purpose, such as Manufacturer; what it removes is
:mod:`tests.unit.test_properties`' business.)
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID, RLELossless

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.detect.ocr import TextRegion
from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.errors import ScrubberError
from scrubber.pipeline import scrub_instance
from scrubber.render import render_frame
from scrubber.samples import build_image, build_instance, sample_patients
from tests.burned_in import ultrasound_with_banner
from tests.canaries import Canaries, leaks_by_place
from tests.conftest import SECRET

pytestmark = pytest.mark.slow

PDF_SOP_CLASS = UID("1.2.840.10008.5.1.4.1.1.104.1")


def _save(ds: Dataset, path: Path, *, replace: dict[bytes, bytes] | None = None) -> None:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    for old, new in (replace or {}).items():
        assert len(old) == len(new) and data.count(old) == 1
        data = data.replace(old, new)
    path.write_bytes(data)


def build_canary_tree(root: Path, canaries: Canaries) -> dict[str, str]:
    """Write the synthetic set; return what each file is meant to exercise."""
    root.mkdir(parents=True)
    purpose: dict[str, str] = {}
    patients = sample_patients(2, seed=12)
    for index in range(3):
        ds = build_instance(patients[index % 2], modality="CT", seed=index)
        canaries.plant(ds)
        _save(ds, root / f"ct{index}.dcm")
        purpose[f"ct{index}.dcm"] = "clean"
    for index in range(2):  # the banner carries canaries too, burned into the pixels
        name, ident = canaries.next(), canaries.next()
        ds = ultrasound_with_banner(f"{name} X", ident)
        canaries.plant(ds)
        ds.PatientName, ds.PatientID = f"{name}^X", ident
        _save(ds, root / f"us{index}.dcm")
        purpose[f"us{index}.dcm"] = "burned-in text"
    pdf = build_instance(patients[0], modality="OT", seed=5)
    del pdf.PixelData
    pdf.SOPClassUID = pdf.file_meta.MediaStorageSOPClassUID = PDF_SOP_CLASS
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    canaries.plant(pdf)
    pdf.EncapsulatedDocument = f"%PDF-1.4 {canaries.next()}\n%%EOF\n".encode()
    _save(pdf, root / "report.dcm")
    purpose["report.dcm"] = "unsupported object"
    truncated = build_instance(patients[1], modality="CT", seed=6)
    canaries.plant(truncated)
    buffer = io.BytesIO()
    truncated.save_as(buffer, enforce_file_format=True)
    (root / "truncated.dcm").write_bytes(buffer.getvalue()[:-3000])
    purpose["truncated.dcm"] = "unreadable"
    rle, _ = build_image(bits_stored=8, rows=32, columns=40, frames=2, seed=7)
    rle.compress(RLELossless, encoding_plugin="pydicom")
    data = bytearray(rle.PixelData)
    data[28:32] = (0x7FFF0000).to_bytes(4, "little")  # first segment offset: far past the end
    rle.PixelData = bytes(data)
    canaries.plant(rle)
    _save(rle, root / "rle.dcm")
    purpose["rle.dcm"] = "undecodable"
    palette, _ = build_image(photometric="PALETTE COLOR", bits_stored=8, rows=32, columns=40)
    for colour in ("Red", "Green", "Blue"):
        for part in ("Descriptor", "Data"):
            delattr(palette, f"{colour}PaletteColorLookupTable{part}")
    canaries.plant(palette)
    _save(palette, root / "palette.dcm")
    purpose["palette.dcm"] = "unsupported pixels"
    numbers, _ = build_image(bits_stored=12, rows=32, columns=40, seed=8)
    numbers.WindowCenter, numbers.RescaleIntercept = "12345.678", "-8765.432"
    canaries.plant(numbers)
    center, intercept = canaries.next(), canaries.next()
    _save(
        numbers,
        root / "numbers.dcm",
        replace={b"12345.678": center.encode(), b"-8765.432": intercept.encode()},
    )
    purpose["numbers.dcm"] = "malformed numbers"
    return purpose


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "scrubber", *args],
        capture_output=True,
        env=env,
        timeout=900,
        check=False,
    )


def test_canaries_in_every_string_reach_no_log_ledger_report_note_or_message(
    tmp_path: Path,
) -> None:
    canaries = Canaries()
    source, out = tmp_path / "in", tmp_path / "out"
    build_canary_tree(source, canaries)
    assert len(canaries.issued) > 300
    env = {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    report, summary = tmp_path / "report.jsonl", tmp_path / "summary.json"
    args = ["run", str(source), "--out", str(out), "-p", "CANARY", "-j", "2", "-v"]
    run = _cli([*args, "--report", str(report), "--summary", str(summary)], env)
    assert run.returncode == 1, run.stderr.decode(errors="replace")[-3000:]
    rows = {r["input"]: r for r in map(json.loads, report.read_text().splitlines())}
    reasons = {name: row["reasons"] for name, row in rows.items()}
    assert reasons["report.dcm"] == ["unsupported_object"]
    assert reasons["truncated.dcm"] == ["unreadable"]
    assert reasons["rle.dcm"] == ["undecodable"]
    assert reasons["palette.dcm"] == ["unsupported_encoding"]
    assert all(rows[f"ct{i}.dcm"]["outcome"] == "clean" for i in range(3))
    assert all(rows[f"us{i}.dcm"]["outcome"] == "scrubbed" for i in range(2))  # OCR read them
    quarantine = tmp_path / "out.quarantine"
    listing = _cli(["review", "list", str(quarantine), "--json"], env)
    items = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(items) >= 4
    shown = [_cli(["review", "show", str(quarantine), item["id"]], env) for item in items]
    reject = _cli(["review", "reject", str(quarantine), items[0]["id"], "--reviewer", "x"], env)
    assert reject.returncode == 0, reject.stderr
    places: dict[str, bytes | str] = {
        "run stdout": run.stdout,
        "run stderr (verbose log of driver and workers)": run.stderr,
        "review list": listing.stdout + listing.stderr,
        "review show": b"".join(s.stdout + s.stderr for s in shown),
        "review reject": reject.stdout + reject.stderr,
        "report": report.read_bytes(),
        "summary": summary.read_bytes(),
    }
    for path in tmp_path.glob("out.ledger.sqlite*"):
        places[path.name] = path.read_bytes()
    for path in quarantine.rglob("*"):
        if path.is_file() and path.suffix not in (".dcm", ".png"):  # notes, audit table
            places[str(path.relative_to(tmp_path))] = path.read_bytes()
    assert leaks_by_place(canaries, places) == {}
    held = b"".join(p.read_bytes() for p in quarantine.rglob("*.dcm"))
    assert canaries.leaks(held), "the quarantined originals should hold canaries"


def test_the_server_answers_and_metrics_carry_no_canary_from_any_string(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from scrubber.deid import DeidConfig
    from scrubber.server import ServerSettings, TokenBook, create_app
    from tests.integration.test_server import _ready

    canaries = Canaries()
    source = tmp_path / "in"
    build_canary_tree(source, canaries)
    token, reviewer = "canary-submitter-token-0123456", "canary-reviewer-token-01234567"
    settings = ServerSettings(
        out=tmp_path / "out",
        quarantine=tmp_path / "q",
        spool=tmp_path / "spool",
        deid=DeidConfig(project="CANARY"),
        secret=b"canary-secret-0123456789abcdef",
        key_path=tmp_path / "key.sqlite",
        tokens=TokenBook.parse(f"submitter:{token},reviewer:{reviewer}"),
    )
    answers: dict[str, bytes | str] = {}
    with TestClient(create_app(settings)) as client:
        _ready(client)
        for path in sorted(source.iterdir()):
            response = client.post(
                "/v1/scrub",
                content=path.read_bytes(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/dicom"},
            )
            assert response.status_code in (200, 202, 400, 422), response.status_code
            if not response.headers.get("content-type", "").startswith("application/dicom"):
                answers[f"answer to {path.name}"] = response.content
        review = {"Authorization": f"Bearer {reviewer}"}
        listing = client.get("/v1/quarantine", headers=review)
        answers["quarantine list"] = listing.content
        for item in listing.json():
            shown = client.get(f"/v1/quarantine/{item['id']}", headers=review)
            answers[f"quarantine item {item['id']}"] = shown.content
        answers["metrics"] = client.get("/metrics").content
    assert len(answers) >= 6
    assert leaks_by_place(canaries, answers) == {}


def _entry_points(path: Path, deid: Deidentifier, out: Path) -> dict[str, Callable[[], object]]:
    """The library's entry points on one file, each a call that may raise a typed error."""

    def decode() -> object:
        ds = read_instance(path)
        description = describe_pixels(ds)
        return [render_frame(frame, ds, description) for frame in iter_frames(ds)]

    return {
        "read": lambda: read_instance(path),
        "describe": lambda: describe_pixels(read_instance(path)),
        "decode": decode,
        "deidentify": lambda: deid.deidentify(read_instance(path)),
        "write": lambda: write_instance(deid.deidentify(read_instance(path)).dataset, out),
    }


def test_exception_messages_of_the_library_carry_no_canary(tmp_path: Path) -> None:
    """Every typed error the entry points raise on the hostile set, and every pipeline message."""

    class NoText:
        name, max_side = "none", 4096

        def read(self, view: np.ndarray) -> list[TextRegion]:
            return []

    canaries = Canaries()
    source = tmp_path / "in"
    build_canary_tree(source, canaries)
    messages: dict[str, str] = {}
    untyped: list[str] = []
    from scrubber.detect import load_classifier

    classifier = load_classifier(threads=1)
    for path in sorted(source.iterdir()):
        deid = Deidentifier(DeidConfig(project="CANARY"), SECRET, None)
        steps = _entry_points(path, deid, tmp_path / "o" / path.name)
        for step, call in steps.items():
            try:
                call()
            except ScrubberError as exc:
                messages[f"{step} {path.name}"] = f"{exc} {exc.reason}"
            except Exception as exc:  # untyped: named by the assertion below
                untyped.append(f"{step} {path.name}: {type(exc).__name__}")
        try:
            ds = read_instance(path)
        except ScrubberError:
            continue
        result = scrub_instance(ds, classifier=classifier, engine=NoText(), deidentifier=deid)
        messages[f"pipeline {path.name}"] = repr(result.message) + repr(result.decisions)
    # rendering (not a typed API) may raise on the malformed numbers; the pipeline holds those
    assert [u for u in untyped if not u.startswith("decode")] == []
    assert any(m for m in messages.values()), "the hostile set raised nothing"
    assert leaks_by_place(canaries, dict(messages)) == {}
