"""Score every frame of one instance: decode, render, classify in batches."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from scrubber.detect.classifier import TextClassifier
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.render import render_frame

__all__ = ["score_instance"]


def score_instance(classifier: TextClassifier, ds: Dataset) -> np.ndarray:
    """Burned-in text probability of every frame of ``ds``, in frame order.

    Frames are decoded one at a time and scored in batches of the classifier's batch size, so a
    long cine never sits in memory whole; identical frames are scored once.

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
    scores: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for frame in iter_frames(ds):
        batch.append(render_frame(frame, ds, description))
        if len(batch) == classifier.batch_size:
            scores.append(classifier.score_views(batch))
            batch = []
    if batch:
        scores.append(classifier.score_views(batch))
    if not scores:
        return np.zeros(0, np.float32)
    return np.concatenate(scores).astype(np.float32, copy=False)
