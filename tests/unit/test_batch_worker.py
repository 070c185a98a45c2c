"""How a batch-run worker process sets itself up."""

from __future__ import annotations

import cv2

from scrubber.runner.batch import _limit_image_threads


def test_a_worker_gives_opencv_its_own_thread_count() -> None:
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        _limit_image_threads(1)  # what `scrubber run` workers get: one thread each
        assert cv2.getNumThreads() == 1
        _limit_image_threads(2)
        assert cv2.getNumThreads() == 2
        _limit_image_threads(0)  # never "OpenCV's default" by accident
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
