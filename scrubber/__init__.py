"""scrubber: find patient-identifying text burned into DICOM pixels and de-identify DICOM.

Importing the package is cheap: heavy dependencies (ONNX Runtime, torch, OCR engines) are imported
inside the functions that need them. The library configures no logging handlers; only the command
line and the server do.
"""

from __future__ import annotations

import logging
import os

# ONNX Runtime (>= 1.29) records usage telemetry on import unless this is set first. A service that
# handles PHI must not phone home, so it is set before anything can import onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
