"""The shared inference process: batches across workers, exact scores, OCR, faults, memory.

The process is real (spawned, on the CPU here, with the shipped model): what a GPU changes is
ONNX Runtime's execution provider, not this code. Error replies and the out-of-memory fallback
are driven in this process, through the same service a spawned process runs.
"""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scrubber.detect import load_classifier, model_input, model_inputs
from scrubber.detect.classifier import TextClassifier, default_model_dir
from scrubber.detect.ocr import OcrUnavailableError, load_engine, register_engine
from scrubber.dicom_io.pixels import describe_pixels
from scrubber.errors import ConfigError
from scrubber.render import render_frame
from scrubber.runner.inference import (
    InferenceError,
    InferenceServer,
    RemoteClassifier,
    RemoteEngine,
    _Channel,
    _ServerConfig,
    _Service,
    connect,
    gpu_devices,
)
from tests.burned_in import ultrasound_with_banner


def _views(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (300, 400), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def local() -> TextClassifier:
    return load_classifier(device="cpu", threads=1)


@pytest.fixture(scope="module")
def server() -> Any:
    with InferenceServer(None, "cpu", "rapidocr", linger=0.5) as running:
        running.start()
        yield running


def test_scores_from_the_process_equal_a_local_classifiers(
    server: InferenceServer, local: TextClassifier
) -> None:
    classifier, _engine = connect([(server.address, server.authkey)], local.manifest, "rapidocr")
    views = _views(5, seed=1)
    raw = np.stack([model_input(v) for v in views])
    expected = local.score_batch(model_inputs(views))
    np.testing.assert_array_equal(classifier.score_batch(raw), expected)
    # float32 inputs (model_inputs) travel as the exact uint8 they were made from
    np.testing.assert_array_equal(classifier.score_batch(model_inputs(views)), expected)
    np.testing.assert_array_equal(classifier.score_views(views), local.score_views(views))
    assert classifier.thresholds == local.thresholds and classifier.device == "shared"


def test_requests_of_several_workers_are_scored_in_one_batch(
    server: InferenceServer, local: TextClassifier
) -> None:
    """Three workers ask at once: the process waits for all three and runs one batch."""
    address = [(server.address, server.authkey)]
    clients = [connect(address, local.manifest, "rapidocr")[0] for _ in range(3)]
    inputs = [np.stack([model_input(v) for v in _views(2, seed=10 + i)]) for i in range(3)]
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(3)

    def ask(index: int) -> None:
        barrier.wait()
        results[index] = clients[index].score_batch(inputs[index])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for index in range(3):
        np.testing.assert_array_equal(results[index], local.score_batch(inputs[index]))
    # read the figures of a separate server so that other tests' requests do not mix in
    with InferenceServer(None, "cpu", "rapidocr", linger=2.0) as alone:
        alone.start()
        clients = [
            connect([(alone.address, alone.authkey)], local.manifest, "rapidocr")[0]
            for _ in range(3)
        ]
        barrier = threading.Barrier(3)
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for client in clients:
            client._channel.close()  # every worker done: nothing more can come
        stats = alone.stop()
    assert stats is not None
    assert (stats.requests, stats.frames) == (3, 6)
    assert stats.batches == 1 and stats.largest_batch == 6, stats


def test_ocr_in_the_process_reads_what_a_local_engine_reads(
    server: InferenceServer, local: TextClassifier
) -> None:
    _classifier, engine = connect([(server.address, server.authkey)], local.manifest, "rapidocr")
    ds = ultrasound_with_banner("MILLER ROSE", "8812345")
    view = render_frame(ds.pixel_array, ds, describe_pixels(ds))
    here = load_engine("rapidocr", threads=1)
    assert engine.max_side == here.max_side == 2048
    remote = engine.read(view)
    assert remote and [r.box for r in remote] == [r.box for r in here.read(view)]
    assert [r.text for r in remote] == [r.text for r in here.read(view)]


def test_a_process_that_dies_fails_the_next_request_and_every_later_one(
    local: TextClassifier,
) -> None:
    doomed = InferenceServer(None, "cpu", "rapidocr")
    doomed.start()
    try:
        classifier, engine = connect([(doomed.address, doomed.authkey)], local.manifest, "x")
        raw = np.stack([model_input(v) for v in _views(1, seed=3)])
        classifier.score_batch(raw)
        doomed._process.kill()
        doomed._process.join()
        with pytest.raises(InferenceError, match="inference process is gone"):
            classifier.score_batch(raw)
        assert classifier.failure is not None and engine.failure is classifier.failure
        with pytest.raises(InferenceError):
            engine.read(np.zeros((32, 32), np.uint8))
    finally:
        doomed.stop()


def test_a_process_that_cannot_load_its_model_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for path in default_model_dir().iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    model = folder / "text_classifier.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")  # damaged
    server = InferenceServer(folder, "cpu", "rapidocr")
    with pytest.raises(ConfigError, match=r"could not start: .*SHA-256"):
        server.start()
    assert not server.alive


def test_the_batch_limit_halves_when_the_device_runs_out_of_memory(
    local: TextClassifier,
) -> None:
    """ONNX Runtime failing to allocate for 32 frames: scored again in chunks of 16, then 8."""
    calls: list[int] = []

    class SmallDevice:
        def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            (chunk,) = feed.values()
            calls.append(len(chunk))
            if len(chunk) > 8:
                raise RuntimeError(
                    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory"
                )
            return [np.full(len(chunk), 0.25, np.float32)]

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider"]

    small = TextClassifier(SmallDevice(), local.manifest, threads=1, batch_size=32)
    service = _Service(small, _ServerConfig(None, "cuda", 1, "rapidocr", 32, 0.0, None))
    inputs = np.zeros((20, 4, 256, 256), np.uint8)
    scores = service._score_adapting(inputs)
    assert scores.tolist() == [0.25] * 20
    assert small.batch_size == 8 and service.stats.batch_limit == 8
    assert calls[:2] == [20, 16] and calls[2:] == [8, 8, 4]


def test_an_error_that_is_not_memory_is_not_retried(local: TextClassifier) -> None:
    class Broken:
        def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT")

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

    broken = TextClassifier(Broken(), local.manifest, threads=1, batch_size=32)
    service = _Service(broken, _ServerConfig(None, "cpu", 1, "rapidocr", 32, 0.0, None))
    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
        service._score_adapting(np.zeros((4, 4, 256, 256), np.uint8))
    assert broken.batch_size == 32


def _served(service: _Service) -> _Channel:
    """A worker's channel to ``service`` over a pipe, served by threads of this process."""
    here, there = Pipe()
    for target in (service.score_loop, service.read_loop):
        threading.Thread(target=target, daemon=True).start()
    threading.Thread(target=service.handle, args=(there,), daemon=True).start()
    return _Channel(here)


def test_an_ocr_engine_that_cannot_load_is_reported_as_such(local: TextClassifier) -> None:
    def broken(threads: int | None = None) -> Any:
        raise OcrUnavailableError("the test engine's model files are missing")

    register_engine("test-inference-broken", broken)
    service = _Service(local, _ServerConfig(None, "cpu", 1, "test-inference-broken", 32, 0, None))
    channel = _served(service)
    engine = RemoteEngine(channel, "test-inference-broken")
    with pytest.raises(OcrUnavailableError, match="model files are missing"):
        engine.read(np.zeros((32, 32), np.uint8))
    assert engine.error is not None and channel.failure is None  # scoring still works
    classifier = RemoteClassifier(channel, local.manifest)
    raw = np.stack([model_input(v) for v in _views(1, seed=4)])
    np.testing.assert_array_equal(classifier.score_batch(raw), local.score_batch(raw))
    service.scores.put(None)
    service.reads.put(None)


def test_an_ocr_read_that_raises_is_raised_again_in_the_worker(local: TextClassifier) -> None:
    """One frame's failure is that input's (held as with a local engine), not the run's."""

    class Engine:
        name = "test-inference-raising"
        max_side = 1024

        def read(self, view: np.ndarray) -> list[Any]:
            if view.shape == (13, 13):
                raise ValueError("this frame")
            return []

    register_engine("test-inference-raising", lambda threads=None: Engine())
    service = _Service(local, _ServerConfig(None, "cpu", 1, "test-inference-raising", 32, 0, None))
    channel = _served(service)
    engine = RemoteEngine(channel, "test-inference-raising")
    assert engine.max_side == 1024
    with pytest.raises(ValueError, match="this frame"):
        engine.read(np.zeros((13, 13), np.uint8))
    assert channel.failure is None and engine.error is None
    assert engine.read(np.zeros((32, 32), np.uint8)) == []
    service.scores.put(None)
    service.reads.put(None)


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("1,3", ["1", "3"]),
        ("GPU-5d3c", ["GPU-5d3c"]),
        ("", []),  # every GPU hidden: no inference process may unhide one
        ("-1", []),
        ("2,-1,3", ["2"]),  # CUDA reads up to the first invalid entry
    ],
)
def test_gpus_are_those_cuda_visible_devices_names(
    monkeypatch: pytest.MonkeyPatch, visible: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu_devices() == expected


@pytest.mark.parametrize(
    ("device", "visible", "expected"),
    [
        ("auto", "1,2", ["1", "2"]),  # one inference process per GPU
        ("auto", "", [None]),  # GPUs hidden: one process, on the CPU, the variable untouched
        ("cpu", "1,2", [None]),
    ],
)
def test_one_inference_process_per_visible_gpu(
    monkeypatch: pytest.MonkeyPatch, device: str, visible: str, expected: list[str | None]
) -> None:
    from scrubber.detect import classifier
    from scrubber.runner.batch import _inference_gpus

    monkeypatch.setattr(classifier, "cuda_available", lambda: True)  # as on a GPU machine
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert _inference_gpus(device) == expected
