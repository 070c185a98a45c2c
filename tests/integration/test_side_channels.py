"""No PHI through side doors (DESIGN invariant 7): canaries in every header string and in the
pixels, run through the batch job, the review queue and the server, must not appear in any log,
ledger, report, summary, note, audit table, metric or error message.

Each canary is a unique string (``ZQV`` + a number) that nothing else produces. The quarantined
originals and their previews are the one place allowed to hold them (they are the PHI under
review); the re-identification key holds mappings by design and is kept apart.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from scrubber.samples import build_instance, sample_patients
from tests.burned_in import ultrasound_with_banner

pytestmark = pytest.mark.slow

TEXT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientAddress",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "OperatorsName",
    "PerformingPhysicianName",
    "StudyDescription",
    "SeriesDescription",
    "PatientComments",
    "AdditionalPatientHistory",
    "AccessionNumber",
    "StationName",
    "DeviceSerialNumber",
    "ImageComments",
    "StudyID",
    "RequestingPhysician",
    "ReasonForTheRequestedProcedure",
)


class _Canaries:
    def __init__(self) -> None:
        self.issued: list[str] = []

    def next(self) -> str:
        value = f"ZQV{len(self.issued) + 1000}"
        self.issued.append(value)
        return value

    def plant(self, ds: Dataset) -> Dataset:
        for keyword in TEXT_KEYWORDS:
            canary = self.next()
            value = f"{canary}^{self.next()}" if keyword.endswith("Name") else canary
            setattr(ds, keyword, value)
        block = ds.private_block(0x0011, "ACME CANARY", create=True)
        block.add_new(0x01, "LO", self.next())
        return ds


def _tree(root: Path, canaries: _Canaries) -> None:
    root.mkdir(parents=True)
    patients = sample_patients(2, seed=8)
    for index in range(4):
        ds = canaries.plant(build_instance(patients[index % 2], modality="CT", seed=index))
        ds.save_as(root / f"ct{index}.dcm", enforce_file_format=True)
    for index in range(2):  # text in the pixels too: the banner carries canaries
        name, ident = canaries.next(), canaries.next()
        ds = canaries.plant(ultrasound_with_banner(f"{name} X", f"{ident}"))
        ds.PatientName, ds.PatientID = f"{name}^X", ident
        ds.save_as(root / f"us{index}.dcm", enforce_file_format=True)
    pdf = canaries.plant(build_instance(patients[0], modality="CT", seed=9))  # held
    del pdf.PixelData
    pdf.SOPClassUID = pdf.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.104.1")
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = f"%PDF-1.4 {canaries.next()}\n%%EOF\n".encode()
    pdf.save_as(root / "report.dcm", enforce_file_format=True)
    broken = io.BytesIO()  # parseable header, then garbage: held as unreadable
    canaries.plant(build_instance(patients[1], modality="CT", seed=10)).save_as(
        broken, enforce_file_format=True
    )
    (root / "broken.dcm").write_bytes(broken.getvalue()[:900] + b"\xff" * 64)


def _leaks(data: bytes, canaries: list[str]) -> list[str]:
    return [c for c in canaries if c.encode() in data]


def test_no_canary_leaves_through_logs_ledger_reports_notes_audit_or_metrics(
    tmp_path: Path,
) -> None:
    canaries = _Canaries()
    source, out = tmp_path / "in", tmp_path / "out"
    _tree(source, canaries)
    env = {"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "scrubber", "run", str(source), "--out", str(out)]
    command += ["-p", "CANARY", "-j", "2", "-v", "--report", str(tmp_path / "report.jsonl")]
    command += ["--summary", str(tmp_path / "summary.json")]
    run = subprocess.run(command, capture_output=True, env=env, timeout=600, check=False)
    assert run.returncode == 1, run.stderr.decode(errors="replace")[-2000:]
    quarantine = tmp_path / "out.quarantine"
    # the review queue: list, show, reject (its output and its audit table)
    listing = subprocess.run(
        [sys.executable, "-m", "scrubber", "review", "list", str(quarantine), "--json"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    items = [json.loads(line) for line in listing.stdout.splitlines()]
    assert {i["reason"] for i in items} >= {"unsupported_object", "unreadable"}
    shown = [
        subprocess.run(
            [sys.executable, "-m", "scrubber", "review", "show", str(quarantine), item["id"]],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
        for item in items
    ]
    decide = ["review", "reject", str(quarantine), items[0]["id"], "--reviewer", "auditor"]
    reject = subprocess.run(
        [sys.executable, "-m", "scrubber", *decide],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert reject.returncode == 0

    places: dict[str, bytes] = {
        "run stdout": run.stdout,
        "run stderr (verbose log)": run.stderr,
        "review list": listing.stdout + listing.stderr,
        "review show": b"".join(s.stdout + s.stderr for s in shown),
        "review reject": reject.stdout + reject.stderr,
        "report": (tmp_path / "report.jsonl").read_bytes(),
        "summary": (tmp_path / "summary.json").read_bytes(),
    }
    for path in tmp_path.glob("out.ledger.sqlite*"):
        places[path.name] = path.read_bytes()
    for path in quarantine.rglob("*"):
        if path.is_file() and path.suffix not in (".dcm", ".png"):  # notes and the audit table
            places[str(path.relative_to(tmp_path))] = path.read_bytes()
    leaks = {where: _leaks(data, canaries.issued) for where, data in places.items()}
    assert {where: found for where, found in leaks.items() if found} == {}
    # the canaries did reach the places allowed to hold them (the test can see them at all)
    held = b"".join(p.read_bytes() for p in quarantine.rglob("*.dcm"))
    assert _leaks(held, canaries.issued)


def test_server_answers_and_metrics_carry_no_canary(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from scrubber.deid import DeidConfig
    from scrubber.server import ServerSettings, TokenBook, create_app
    from tests.integration.test_server import _ready

    canaries = _Canaries()
    source = tmp_path / "in"
    _tree(source, canaries)
    token = "canary-submitter-token-012345"
    reviewer = "canary-reviewer-token-0123456"
    settings = ServerSettings(
        out=tmp_path / "out",
        quarantine=tmp_path / "q",
        spool=tmp_path / "spool",
        deid=DeidConfig(project="CANARY"),
        secret=b"canary-secret-0123456789abcdef",
        key_path=tmp_path / "key.sqlite",
        tokens=TokenBook.parse(f"submitter:{token},reviewer:{reviewer}"),
    )
    texts = []
    with TestClient(create_app(settings)) as client:
        _ready(client)
        for path in sorted(source.iterdir()):
            response = client.post(
                "/v1/scrub",
                content=path.read_bytes(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/dicom"},
            )
            assert response.status_code in (200, 202, 400), response.status_code
            if response.headers.get("content-type", "").startswith("application/json"):
                texts.append(response.content)
        review = {"Authorization": f"Bearer {reviewer}"}
        listing = client.get("/v1/quarantine", headers=review)
        texts.append(listing.content)
        for item in listing.json():
            texts.append(client.get(f"/v1/quarantine/{item['id']}", headers=review).content)
        texts.append(client.get("/metrics").content)
        texts.append(client.get("/review/sign-in").content)
    assert _leaks(b"".join(texts), canaries.issued) == []


def test_script_payloads_in_headers_never_reach_the_review_page(tmp_path: Path) -> None:
    """Header strings carrying HTML/JS (an XSS probe) are never served; the page writes data
    with textContent only, so even a hostile note could not inject markup."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from scrubber.deid import DeidConfig
    from scrubber.server import ServerSettings, TokenBook, create_app
    from scrubber.server.page import REVIEW_PAGE
    from tests.integration.test_server import _ready

    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    ds = build_instance(sample_patients(1, seed=3)[0], modality="CT")
    for keyword in ("PatientName", "PatientID", "StudyDescription", "InstitutionName"):
        setattr(ds, keyword, payload)
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.104.1")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    reviewer = "xss-reviewer-token-0123456789"
    settings = ServerSettings(
        out=tmp_path / "out",
        quarantine=tmp_path / "q",
        spool=tmp_path / "spool",
        deid=DeidConfig(project="XSS"),
        secret=b"xss-secret-0123456789abcdefgh",
        key_path=tmp_path / "key.sqlite",
        tokens=TokenBook.parse(f"submitter:{reviewer}x,reviewer:{reviewer}"),
    )
    with TestClient(create_app(settings)) as client:
        _ready(client)
        held = client.post(
            "/v1/scrub",
            content=body.getvalue(),
            headers={"Authorization": f"Bearer {reviewer}x", "Content-Type": "application/dicom"},
        )
        assert held.status_code == 202
        auth = {"Authorization": f"Bearer {reviewer}"}
        item = client.get(f"/v1/quarantine/{held.json()['quarantine_id']}", headers=auth)
        served = held.content + item.content + client.get("/v1/quarantine", headers=auth).content
    assert b"onerror" not in served and b"<script" not in served
    # the page assigns data with textContent; innerHTML is only ever cleared
    assert REVIEW_PAGE.count(".innerHTML") == REVIEW_PAGE.count('.innerHTML = ""')
