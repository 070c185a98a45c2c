"""What importing scrubber does and does not do."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "torchvision", "onnxruntime", "easyocr", "cv2", "fastapi", "ray", "rapidocr"]


def test_import_is_light_and_disables_onnxruntime_telemetry() -> None:
    code = (
        "import json, os, sys; import scrubber, scrubber.deid, scrubber.dicom_io, scrubber.runner;"
        f"print(json.dumps([[m for m in {HEAVY!r} if m in sys.modules],"
        " os.environ.get('ORT_DISABLE_TELEMETRY')]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, telemetry = json.loads(done.stdout)
    assert loaded == []
    assert telemetry == "1"


def test_library_configures_no_logging_handlers() -> None:
    code = (
        "import logging, scrubber.deid, scrubber.dicom_io;"
        "print(len(logging.getLogger().handlers),"
        " [type(h).__name__ for h in logging.getLogger('scrubber').handlers])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0 ['NullHandler']"
