"""Score every frame of one instance: decode, render, classify in batches."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from scrubber.detect.classifier import FrameBatcher, TextClassifier
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.render import render_frame

__all__ = ["score_instance"]


def score_instance(classifier: TextClassifier, ds: Dataset) -> np.ndarray:
    """Burned-in text probability of every frame of ``ds``, in frame order.

    Frames are decoded and rendered one at a time and reduced to the model input at once, and
    scored in batches of the classifier's batch size, so a long cine never sits in memory whole;
    identical frames anywhere in the instance (a frozen cine, repeated banners) are scored once.

    Parameters
    ----------
    classifier : TextClassifier
        A loaded classifier.
    ds : pydicom.dataset.Dataset
        An instance with pixel data.

    Returns
    -------
    numpy.ndarray
        ``float32`` array with one probability per frame.

    Raises
    ------
    scrubber.dicom_io.pixels.UnsupportedPixelsError
        If the pixel description does not add up.
    scrubber.dicom_io.pixels.UndecodablePixelsError
        If a frame cannot be decoded.
    """
    description = describe_pixels(ds)
    batcher: FrameBatcher[int] = classifier.batcher()
    scores: dict[int, float] = {}
    count = 0
    for count, frame in enumerate(iter_frames(ds), start=1):
        scores.update(batcher.add(count - 1, render_frame(frame, ds, description)))
    scores.update(batcher.flush())
    return np.array([scores[index] for index in range(count)], dtype=np.float32)
