"""The scrub server's HTTP API: roles, limits, hostile uploads, held instances, metrics."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from scrubber.deid import DeidConfig
from scrubber.samples import build_instance, sample_patients
from tests.burned_in import ultrasound_with_banner

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from scrubber.server import ServerSettings, TokenBook, create_app

pytestmark = pytest.mark.slow

SUBMIT = "submitter-token-0123456789"
REVIEW = "reviewer-token-0123456789"


def _settings(tmp_path: Path, **overrides: object) -> ServerSettings:
    values: dict[str, object] = {
        "out": tmp_path / "out",
        "quarantine": tmp_path / "out.quarantine",
        "spool": tmp_path / "spool",
        "deid": DeidConfig(project="API"),
        "secret": b"server-test-secret-0123456789",
        "key_path": tmp_path / "key.sqlite",
        "tokens": TokenBook.parse(f"submitter:{SUBMIT},reviewer:{REVIEW}"),
        "roots": (tmp_path / "exports",),
        "max_upload": 8 * 1024 * 1024,
        "workers": 2,
    }
    values.update(overrides)
    return ServerSettings(**values)  # type: ignore[arg-type]


def _ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the models did not load"
        time.sleep(0.1)
    return client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path))) as c:
        yield _ready(c)


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _ct() -> Dataset:
    return build_instance(sample_patients(1, seed=4)[0], modality="CT")


def _pdf() -> Dataset:
    ds = _ct()
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.104.1")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4 MILLER ROSE\n%%EOF\n"
    return ds


def _post(client: TestClient, body: bytes, token: str = SUBMIT, **headers: str) -> Any:
    return client.post(
        "/v1/scrub",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/dicom",
            **headers,
        },
    )


def test_health_is_open_and_ready_tells_when_models_are_loaded(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    cold = TestClient(app)  # no lifespan: the models never load
    assert cold.get("/healthz").status_code == 200
    not_ready = cold.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.headers["Retry-After"]
    with TestClient(app) as warm:
        assert _ready(warm).get("/readyz").json() == {"status": "ready"}


def test_roles_are_enforced(client: TestClient) -> None:
    body = _bytes(_ct())
    assert client.post("/v1/scrub", content=body).status_code == 401
    assert _post(client, body, token="not-a-token-at-all-xxxxx").status_code == 401
    assert _post(client, body, token=REVIEW).status_code == 403
    listing = client.get("/v1/quarantine", headers={"Authorization": f"Bearer {SUBMIT}"})
    assert listing.status_code == 403
    assert client.get("/v1/quarantine").status_code == 401
    ok = client.get("/v1/quarantine", headers={"Authorization": f"Bearer {REVIEW}"})
    assert ok.status_code == 200


def test_a_clean_instance_comes_back_de_identified(client: TestClient) -> None:
    ds = _ct()
    response = _post(client, _bytes(ds))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    assert response.headers["X-Scrubber-Outcome"] == "clean"
    out = pydicom.dcmread(io.BytesIO(response.content))
    assert out.PatientName != ds.PatientName and out.PixelData == ds.PixelData
    assert str(ds.PatientName) not in response.text


def test_burned_in_text_is_blacked_out_in_the_answer(client: TestClient) -> None:
    response = _post(client, _bytes(ultrasound_with_banner("MILLER ROSE", "8812345")))
    assert response.status_code == 200 and response.headers["X-Scrubber-Outcome"] == "scrubbed"
    out = pydicom.dcmread(io.BytesIO(response.content))
    assert out.BurnedInAnnotation == "NO" and "MILLER" not in str(out.PatientName)


def test_a_held_instance_answers_202_and_reaches_the_review_queue(client: TestClient) -> None:
    response = _post(client, _bytes(_pdf()))
    assert response.status_code == 202, response.text
    held = response.json()
    assert held["reason"] == "unsupported_object" and "MILLER" not in response.text
    review = {"Authorization": f"Bearer {REVIEW}"}
    items = client.get("/v1/quarantine", headers=review).json()
    assert [i["id"] for i in items] == [held["quarantine_id"]]
    rejected = client.post(f"/v1/quarantine/{held['quarantine_id']}/reject", headers=review)
    assert rejected.status_code == 200
    audit = client.get("/v1/audit", headers=review).json()
    assert [(a["action"], a["reason"]) for a in audit] == [("reject", "unsupported_object")]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"hello, not dicom at all" * 10, "application/dicom", 400),
        (b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f", "application/dicom", 400),
        (b"{}", "application/json", 415),
    ],
)
def test_malformed_uploads_get_a_clear_4xx(
    client: TestClient, body: bytes, content_type: str, status: int
) -> None:
    response = _post(client, body, **{"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["detail"]


def test_an_oversize_upload_is_refused(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path, max_upload=4096))) as client:
        response = _post(_ready(client), _bytes(_ct()))
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_a_full_queue_answers_429_with_retry_after(client: TestClient) -> None:
    state = client.app.state.scrubber  # type: ignore[attr-defined]
    state.in_work = state.settings.queue_size
    try:
        response = _post(client, _bytes(_ct()))
    finally:
        state.in_work = 0
    assert response.status_code == 429 and response.headers["Retry-After"]


def test_jobs_read_only_under_configured_roots(client: TestClient, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {SUBMIT}"}
    (tmp_path / "exports" / "study").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    for path in (str(tmp_path / "secret"), str(tmp_path / "exports" / ".." / "secret"), "rel"):
        refused = client.post("/v1/jobs", json={"input": path}, headers=auth)
        assert refused.status_code == 403, path
    _ct().save_as(tmp_path / "exports" / "study" / "ct.dcm", enforce_file_format=True)
    job = client.post("/v1/jobs", json={"input": str(tmp_path / "exports" / "study")}, headers=auth)
    assert job.status_code == 202
    job_id = job.json()["job_id"]
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/jobs/{job_id}", headers=auth).json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status["state"] == "done" and status["counts"] == {"clean": 1}
    assert (tmp_path / "out" / "study" / "ct.dcm").is_file()


def test_metrics_count_outcomes_without_phi(client: TestClient) -> None:
    _post(client, _bytes(_ct()))
    _post(client, _bytes(_pdf()))
    text = client.get("/metrics").text
    assert 'scrubber_instances_total{outcome="clean",reason=""} 1.0' in text
    assert 'outcome="quarantined",reason="unsupported_object"' in text
    assert "scrubber_stage_seconds_bucket" in text
    assert "MILLER" not in text and "API_" not in text


def test_tokens_must_be_long_and_roles_known() -> None:
    from scrubber.errors import ConfigError

    with pytest.raises(ConfigError, match="shorter"):
        TokenBook.parse("submitter:short")
    with pytest.raises(ConfigError, match="role"):
        TokenBook.parse(f"admin:{SUBMIT}")
    book = TokenBook.parse(f"# comment\nsubmitter:{SUBMIT}\nreviewer:{SUBMIT}\n")
    assert book.roles(SUBMIT) == {"submitter", "reviewer"} and book.roles("x" * 30) == set()


def test_uid_of_answer_differs_from_the_upload(client: TestClient) -> None:
    ds = _ct()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = pydicom.dcmread(io.BytesIO(_post(client, _bytes(ds)).content))
    assert out.SOPInstanceUID != ds.SOPInstanceUID


def test_under_load_nothing_is_lost(tmp_path: Path) -> None:
    """8 clients, a queue of 4: some uploads are told to retry, every one is answered in the end
    (``benchmarks/load_server.py`` runs the same with 500 uploads and reports latencies)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "load_server.py"
    spec = importlib.util.spec_from_file_location("load_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.run(requests=48, clients=8, workers=2, queue_size=4)
    assert figures["answered"] == 48 and figures["statuses"] == {200: 48}
    assert figures["retries"] > 0  # the bound was reached and answered politely


def test_serve_refuses_a_missing_gpu_and_missing_tokens(tmp_path: Path) -> None:
    import onnxruntime  # type: ignore[import-untyped]
    from typer.testing import CliRunner

    from scrubber.cli.app import app

    env = {"SCRUBBER_HOME": str(tmp_path / "home"), "SCRUBBER_API_TOKENS": ""}
    args = ["serve", "--out", str(tmp_path / "out"), "-p", "API"]
    no_tokens = CliRunner().invoke(app, args, env=env)
    assert no_tokens.exit_code == 2 and "No API tokens" in no_tokens.output
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        env["SCRUBBER_API_TOKENS"] = f"submitter:{SUBMIT}"
        no_gpu = CliRunner().invoke(app, [*args, "--device", "cuda"], env=env)
        assert no_gpu.exit_code == 2 and "CUDA execution provider" in no_gpu.output


def test_an_unexpected_job_error_is_logged_by_place_not_message(
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scrubber.runner import batch

    canary = "QZVCANARY-JOB-7731"

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"a codec quoting a header value: {canary}")

    monkeypatch.setattr(batch.BatchRun, "__init__", explode)
    auth = {"Authorization": f"Bearer {SUBMIT}"}
    (tmp_path / "exports" / "study").mkdir(parents=True)
    _ct().save_as(tmp_path / "exports" / "study" / "ct.dcm", enforce_file_format=True)
    job_id = client.post(
        "/v1/jobs", json={"input": str(tmp_path / "exports" / "study")}, headers=auth
    ).json()["job_id"]
    deadline = time.monotonic() + 60
    while (status := client.get(f"/v1/jobs/{job_id}", headers=auth).json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["state"] == "failed" and status["error"] == "unexpected RuntimeError"
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "batch job failed (RuntimeError at " in logged
    assert canary not in logged and canary not in str(status)
