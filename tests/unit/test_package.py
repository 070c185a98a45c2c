"""What importing scrubber does and does not do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ["torch", "torchvision", "onnxruntime", "easyocr", "cv2", "fastapi", "ray", "rapidocr"]


def test_import_is_light_and_disables_onnxruntime_telemetry() -> None:
    code = (
        "import json, os, sys; import scrubber, scrubber.deid, scrubber.dicom_io, scrubber.runner,"
        " scrubber.pipeline, scrubber.detect.ocr, scrubber.runner.scrub_job;"
        f"print(json.dumps([[m for m in {HEAVY!r} if m in sys.modules],"
        " os.environ.get('ORT_DISABLE_TELEMETRY')]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, telemetry = json.loads(done.stdout)
    assert loaded == []
    assert telemetry == "1"


@pytest.mark.slow
def test_running_the_models_leaves_no_telemetry_state_in_the_users_home(tmp_path: Path) -> None:
    """ONNX Runtime >= 1.29 writes a device id and a usage database under ~/.cache unless told not
    to; scrubber's classifier and its RapidOCR engine must leave the home folder untouched."""
    code = (
        "import numpy as np; import scrubber;"
        "from scrubber.detect import load_classifier; from scrubber.detect.ocr import load_engine;"
        "c = load_classifier(threads=1); c.score_views([np.zeros((64, 64), np.uint8)]);"
        "load_engine('rapidocr', threads=1).read(np.zeros((64, 64, 3), np.uint8))"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")
    }
    env["HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == []


def test_library_configures_no_logging_handlers() -> None:
    code = (
        "import logging, scrubber.deid, scrubber.dicom_io;"
        "print(len(logging.getLogger().handlers),"
        " [type(h).__name__ for h in logging.getLogger('scrubber').handlers])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0 ['NullHandler']"


def test_the_images_run_unprivileged_check_the_model_and_keep_telemetry_off() -> None:
    """The Dockerfile cannot be built here (no daemon); its promises are checked as text."""
    text = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text(encoding="utf-8")
    stages = text.split("\nFROM ")[1:]
    names = [stage.split("\n", 1)[0].split(" AS ")[-1].strip() for stage in stages]
    assert names == ["cli", "server-gpu"]
    for stage in stages:
        assert "\nUSER scrubber" in stage  # never root at run time
        assert "COPY models ./models" in stage and "load_classifier(" in stage  # sha256 at build
        assert "ORT_DISABLE_TELEMETRY=1" in stage
    server = stages[1]
    assert server.startswith("nvidia/cuda:") and "onnxruntime-gpu" in server
    # onnxruntime-gpu 1.31 is built for CUDA 13: an older CUDA base cannot start its provider
    assert server.startswith("nvidia/cuda:13.") and "onnxruntime-gpu>=1.31" in server
    assert "HEALTHCHECK" in server and "/readyz" in server
    assert "pip uninstall -y onnxruntime" in server  # one ONNX Runtime build only


def test_where_names_the_place_of_an_error_but_never_its_message() -> None:
    from scrubber.errors import where

    def inner() -> None:
        raise ValueError("PATIENT^NAME quoted by a library")

    try:
        inner()
    except ValueError as exc:
        text = where(exc)
    assert text.startswith("ValueError at test_package.py:")
    assert "(inner)" in text and "PATIENT" not in text
