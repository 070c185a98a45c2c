"""Detection: which frames carry burned-in text.

* :mod:`~scrubber.detect.model_input`: a rendered frame reduced to the classifier's input.
* :mod:`~scrubber.detect.classifier`: the ONNX classifier, checked against its manifest, scoring
  frames in batches with repeats scored once.
* :mod:`~scrubber.detect.instance`: every frame of an instance decoded, rendered and scored.
* :mod:`~scrubber.detect.routing`: thresholds and header flags that send frames to OCR.

Importing this package is cheap: ONNX Runtime and OpenCV are imported when first used.
"""

from __future__ import annotations

from scrubber.detect.classifier import (
    DEFAULT_BATCH_SIZE,
    MANIFEST_NAME,
    MODEL_DIR_ENV,
    THREADS_ENV,
    ClassifierStats,
    Device,
    FrameBatcher,
    Manifest,
    TextClassifier,
    default_model_dir,
    frame_digest,
    load_classifier,
)
from scrubber.detect.instance import score_instance
from scrubber.detect.model_input import CHANNELS, INPUT_SIZE, model_input, model_inputs
from scrubber.detect.routing import (
    HEADER_FLAGS,
    UNCERTAIN_SCORE_REASON,
    FrameRoute,
    Thresholds,
    expects_text,
    header_flags,
    route_frame,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_BATCH_SIZE",
    "HEADER_FLAGS",
    "INPUT_SIZE",
    "MANIFEST_NAME",
    "MODEL_DIR_ENV",
    "THREADS_ENV",
    "UNCERTAIN_SCORE_REASON",
    "ClassifierStats",
    "Device",
    "FrameBatcher",
    "FrameRoute",
    "Manifest",
    "TextClassifier",
    "Thresholds",
    "default_model_dir",
    "expects_text",
    "frame_digest",
    "header_flags",
    "load_classifier",
    "model_input",
    "model_inputs",
    "route_frame",
    "score_instance",
]
