"""``scrubber node`` with real third-party peers: dcmtk's storescu sends, storescp receives.

The node scrubs what it receives and forwards clean and scrubbed instances; held ones wait in the
quarantine and arrive after a release; a destination that goes away mid-transfer and comes back
gets every instance exactly once; a node restarted with a full spool forwards what it had.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from scrubber.deid import DeidConfig, Deidentifier, KeyStore, resolve_secret
from scrubber.review import ReviewQueue
from scrubber.samples import build_instance, sample_patients
from tests.burned_in import hold_banner, ultrasound_with_banner
from tests.conftest import require_tool

pytest.importorskip("pynetdicom")
from scrubber.node import Destination, NodeSettings, ScrubNode

pytestmark = [
    pytest.mark.slow,
    # pynetdicom 3.0 leaves its socket unclosed when the peer refuses the connection (the
    # forwarder's retries against a destination that is down); that is its leak, not ours
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


class _Receiver:
    """dcmtk's storescp as the research destination (unique file names: duplicates show)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        storescp = require_tool("storescp")
        self.process = subprocess.Popen(
            [storescp, "-aet", "DEST", "+xa", "+uf", "-od", str(self.folder), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._listening, 30)

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def received(self) -> list[Dataset]:
        return [pydicom.dcmread(p) for p in sorted(self.folder.iterdir()) if p.is_file()]


def _instances(folder: Path, count: int) -> list[Path]:
    """CT slices of two patients, an ultrasound banner, and an encapsulated PDF (held)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    patients = sample_patients(2, seed=21)
    for index in range(count):
        ds = build_instance(
            patients[index % 2], modality="CT", instance_number=index + 1, seed=index
        )
        path = folder / f"ct{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    banner = folder / "banner.dcm"
    ultrasound_with_banner("MILLER ROSE", "8812345").save_as(banner, enforce_file_format=True)
    paths.append(banner)
    pdf = build_instance(patients[0], modality="CT", seed=99)
    del pdf.PixelData
    pdf.SOPClassUID = pdf.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.104.1")
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    pdf.save_as(folder / "report.dcm", enforce_file_format=True)
    paths.append(folder / "report.dcm")
    return paths


def _send(paths: list[Path], port: int, calling: str = "PACS") -> subprocess.CompletedProcess[str]:
    storescu = require_tool("storescu")
    return subprocess.run(
        [storescu, "-aet", calling, "-aec", "SCRUBBER", "-R", "127.0.0.1", str(port)]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[[int], ScrubNode]]:
    started: list[ScrubNode] = []

    def make(destination_port: int, port: int | None = None) -> ScrubNode:
        settings = NodeSettings(
            ae_title="SCRUBBER",
            port=port or _port(),
            destination=Destination("DEST", "127.0.0.1", destination_port),
            spool=tmp_path / "spool",
            quarantine=tmp_path / "quarantine",
            project="NODE",
            routes={"PACS": "NODE"},
            key_dir=tmp_path / "keys",
            max_backoff=1.0,
        )
        node = ScrubNode(settings)
        node.start()
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


def test_instances_arrive_scrubbed_and_held_ones_after_release(
    tmp_path: Path, node_factory: Callable[[int], ScrubNode]
) -> None:
    receiver = _Receiver(tmp_path / "dest", _port())
    receiver.start()
    try:
        node = node_factory(receiver.port)
        sent = _instances(tmp_path / "send", 3)
        originals = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in sent}
        result = _send(sent, node.settings.port)
        assert result.returncode == 0, result.stderr
        _wait(lambda: len(receiver.received()) == 4)  # three CT slices and the banner
        got = receiver.received()
        for ds in got:
            assert ds.SOPInstanceUID not in originals  # remapped
            assert "PatientName" not in ds or not str(ds.PatientName).startswith(
                tuple(str(o.PatientName) for o in originals.values())
            )
        banner = next(ds for ds in got if ds.Modality == "US")
        assert banner.BurnedInAnnotation == "NO"
        queue = ReviewQueue(tmp_path / "quarantine")
        held = queue.items()
        assert [item.reason for item in held] == ["unsupported_object"]
        assert node.counts["held"] == 1

        # a reviewer releases an instance held at the node: it is forwarded too
        hold_banner(queue.root, Path("node/NODE/held-us.dcm"), [], "DOE JANE", "5550001")
        item = next(i for i in queue.items() if i.reason == "uncertain_score")
        from scrubber.detect.ocr import load_engine

        with KeyStore(tmp_path / "keys" / "NODE" / "reid-key.sqlite", "NODE") as store:
            secret, _ = resolve_secret(store, None)
            queue.release(
                item.id,
                node.outgoing,
                engine=load_engine("rapidocr"),
                deidentifier=Deidentifier(DeidConfig(project="NODE"), secret, store),
                reviewer="dr.who",
                boxes=[(-1, 4, 6, 170, 26), (-1, 474, 6, 110, 26)],
            )
        node.wake()
        _wait(lambda: len(receiver.received()) == 5)
    finally:
        receiver.stop()


def test_unknown_callers_are_refused(
    tmp_path: Path, node_factory: Callable[[int], ScrubNode]
) -> None:
    node = node_factory(_port())
    sent = _instances(tmp_path / "send", 1)[:1]
    result = _send(sent, node.settings.port, calling="STRANGER")
    assert "0x0124" in result.stderr or "Refused" in result.stderr or result.returncode != 0
    time.sleep(0.5)
    assert node.counts["received"] == 0
    assert not list((tmp_path / "spool" / "incoming").glob("*.dcm"))


def test_a_destination_that_goes_away_and_a_node_restart_lose_nothing(
    tmp_path: Path, node_factory: Callable[..., ScrubNode]
) -> None:
    receiver = _Receiver(tmp_path / "dest", _port())
    receiver.start()
    node = node_factory(receiver.port)
    first = _instances(tmp_path / "first", 4)[:4]
    assert _send(first, node.settings.port).returncode == 0
    _wait(lambda: len(receiver.received()) >= 1)
    receiver.stop()  # the destination goes away mid-transfer
    second = _instances(tmp_path / "second", 8)[4:8]  # other slices (other UIDs)
    assert _send(second, node.settings.port).returncode == 0
    _wait(lambda: node.counts["failed_sends"] > 0)
    node.stop()  # ... and the node is restarted while instances wait in its spool
    restarted = node_factory(receiver.port, node.settings.port)
    receiver.start()
    _wait(lambda: len(receiver.received()) >= 8)
    time.sleep(2)  # anything sent twice would show now
    got = receiver.received()
    try:
        assert len(got) == 8 and len({ds.SOPInstanceUID for ds in got}) == 8
        assert not list(restarted.outgoing.rglob("*.dcm"))
    finally:
        receiver.stop()


def test_verification_answers_c_echo(node_factory: Callable[[int], ScrubNode]) -> None:
    echoscu = require_tool("echoscu")
    node = node_factory(_port())
    result = subprocess.run(
        [echoscu, "-aet", "PACS", "-aec", "SCRUBBER", "127.0.0.1", str(node.settings.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_logs_carry_no_header_values(
    tmp_path: Path, node_factory: Callable[[int], ScrubNode], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="scrubber")
    node = node_factory(_port())  # the destination is down: failures are logged
    sent = _instances(tmp_path / "send", 1)
    assert _send(sent, node.settings.port).returncode == 0
    _wait(lambda: node.counts["failed_sends"] > 0 and node.counts["held"] == 1)
    names = {str(pydicom.dcmread(p).PatientName) for p in sent} | {"MILLER", "8812345"}
    text = caplog.text
    assert "held an instance" in text and not any(n and n in text for n in names)
