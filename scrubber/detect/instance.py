"""Score every frame of one instance: decode, render, classify in batches."""

from __future__ import annotations

import itertools

import numpy as np
from pydicom.dataset import Dataset

from scrubber.detect.classifier import FrameBatcher, TextClassifier
from scrubber.detect.model_input import model_input
from scrubber.dicom_io.pixels import PixelDescription, describe_pixels, iter_frames
from scrubber.render import render_frame

__all__ = ["score_instance"]


def score_instance(
    classifier: TextClassifier, ds: Dataset, description: PixelDescription | None = None
) -> np.ndarray:
    """Burned-in text probability of every frame of ``ds``, in frame order.

    Frames are decoded and rendered one at a time and reduced to the model input at once, and
    scored in batches of the classifier's batch size, so a long cine never sits in memory whole;
    identical frames anywhere in the instance (a frozen cine, repeated banners) are scored once.
    A single-frame instance has nothing to repeat: its frame is scored without a digest.

    Parameters
    ----------
    classifier : TextClassifier
        A loaded classifier.
    ds : pydicom.dataset.Dataset
        An instance with pixel data.
    description : PixelDescription, optional
        ``describe_pixels(ds)``, if the caller has it already.

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
    description = description or describe_pixels(ds)
    frames = iter_frames(ds, description=description)
    first = next(frames, None)
    if first is None:
        return np.zeros(0, np.float32)
    view = render_frame(first, ds, description)
    second = next(frames, None)
    if second is None:
        return classifier.score_batch(model_input(view, classifier.manifest.size)[None])
    batcher: FrameBatcher[int] = classifier.batcher()
    scores = batcher.add(0, view)
    count = 1
    for count, frame in enumerate(itertools.chain([second], frames), start=2):
        scores.update(batcher.add(count - 1, render_frame(frame, ds, description)))
    scores.update(batcher.flush())
    return np.array([scores[index] for index in range(count)], dtype=np.float32)
