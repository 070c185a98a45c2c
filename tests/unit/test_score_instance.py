"""Every frame of an instance scored in order, repeats across the whole cine scored once."""

from __future__ import annotations

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from scrubber.detect import load_classifier, score_instance
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.render import render_frame
from scrubber.samples import build_image
from tests.conftest import ROOT


def test_frames_scored_in_order_and_repeats_across_batches_once() -> None:
    classifier = load_classifier(ROOT / "models", device="cpu", threads=1, batch_size=4)
    ds, values = build_image(
        photometric="MONOCHROME2", bits_stored=8, frames=3, rows=96, columns=96, seed=5
    )
    # 40 frames cycling through 3 distinct images: repeats land in different batches of 4
    cine = np.stack([values[i % 3] for i in range(40)])
    ds.NumberOfFrames = 40
    ds.PixelData = cine.astype(np.uint8).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    scores = score_instance(classifier, ds)
    assert scores.shape == (40,) and scores.dtype == np.float32
    assert classifier.stats.frames == 3
    description = describe_pixels(ds)
    views = [render_frame(f, ds, description) for f in iter_frames(ds, indices=[0, 1, 2])]
    expected = classifier.score_views(views)
    np.testing.assert_array_equal(scores, np.tile(expected, 14)[:40])


def test_one_and_two_frame_instances_score_like_the_batched_path() -> None:
    """A single frame skips the repeat digest; its score and type are those of the batcher."""
    classifier = load_classifier(ROOT / "models", device="cpu", threads=1)
    for frames in (1, 2):
        ds, _values = build_image(
            photometric="MONOCHROME2", bits_stored=12, frames=frames, rows=64, columns=80, seed=9
        )
        description = describe_pixels(ds)
        scores = score_instance(classifier, ds, description)
        views = [render_frame(f, ds, description) for f in iter_frames(ds)]
        assert scores.shape == (frames,) and scores.dtype == np.float32
        np.testing.assert_array_equal(scores, classifier.score_views(views))
