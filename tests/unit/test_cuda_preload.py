"""CUDA libraries from NVIDIA's pip packages are preloaded once, quietly, for GPU builds only."""

from __future__ import annotations

import logging

import onnxruntime as ort  # type: ignore[import-untyped]
import pytest

from scrubber.detect import classifier


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []

    def preload() -> None:
        made.append("preload")
        print("Loaded libcublasLt.so.13 from nvidia/cu13/lib")  # what ONNX Runtime prints

    monkeypatch.setattr(classifier, "_preloaded", [])
    monkeypatch.setattr(ort, "preload_dlls", preload, raising=False)
    return made


def test_a_gpu_build_preloads_once_and_prints_nothing(
    calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with caplog.at_level(logging.DEBUG, logger="scrubber.detect.classifier"):
        classifier.preload_cuda_libraries()
        classifier.preload_cuda_libraries()
    assert calls == ["preload"]
    assert capsys.readouterr().out == ""  # a CLI's output stays clean
    assert "libcublasLt" in caplog.text


def test_a_cpu_build_preloads_nothing(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    classifier.preload_cuda_libraries()
    assert calls == []


def test_a_failed_preload_is_left_to_the_session_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("Invalid parameter of directory=None. The directory does not exist!")

    monkeypatch.setattr(classifier, "_preloaded", [])
    monkeypatch.setattr(ort, "preload_dlls", broken, raising=False)
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    classifier.preload_cuda_libraries()  # no exception: loading the session says what is wrong


def test_loading_the_classifier_on_the_cpu_preloads_nothing(calls: list[str]) -> None:
    loaded = classifier.load_classifier(None, device="cpu", threads=1)
    assert loaded.device == "cpu"
    assert calls == []
