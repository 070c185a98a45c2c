"""Pin the classifier's frame scores in pipeline tests, so routing is tested, not the model."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from scrubber.detect import TextClassifier
from scrubber.dicom_io.pixels import PixelDescription, describe_pixels
from scrubber.pipeline import instance as pipeline_module


def pin_scores(monkeypatch: pytest.MonkeyPatch, score: float) -> None:
    """Make every frame of every instance score ``score`` in :func:`scrub_instance`."""

    def fake(
        _classifier: TextClassifier, ds: Dataset, description: PixelDescription | None = None
    ) -> np.ndarray:
        return np.full((description or describe_pixels(ds)).frames, score, np.float32)

    monkeypatch.setattr(pipeline_module, "score_instance", fake)
