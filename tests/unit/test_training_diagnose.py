"""The classifier diagnosis groups text frames correctly (no model or torch needed)."""

from __future__ import annotations

import numpy as np

from training.diagnose import groups, split_report, tallest_line


def test_tallest_line_is_the_largest_short_side() -> None:
    assert tallest_line([]) == 0.0
    assert tallest_line([[0, 0, 40, 3], [5, 5, 2.5, 30]]) == 3.0  # a rotated line counts its width


def test_groups_count_misses_of_text_frames_only() -> None:
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.05])
    labels = np.array([1, 1, 1, 0, 0])
    keys = ["b", "a", "a", "a", "c"]
    out = groups(scores, labels, keys, threshold=0.5, order=["b"])
    assert list(out) == ["b", "a"]  # "c" has no text frame; the order is honoured
    assert out["a"] == {"frames": 2, "missed": 1, "recall": 0.5}
    assert out["b"] == {"frames": 1, "missed": 0, "recall": 1.0}


def test_split_report_puts_small_text_in_the_first_group() -> None:
    labels = np.array([1, 1, 0, 0] * 25)
    scores = np.where(labels == 1, 0.9, 0.1).astype(np.float32)
    scores[0] = 0.05  # one text frame missed: its line is 2 cells tall
    boxes = [
        [[0, 0, 30, 2]] if i == 0 else ([[0, 0, 30, 20]] if y else []) for i, y in enumerate(labels)
    ]
    split = {"labels": labels, "kinds": ["us"] * len(labels), "boxes": boxes}
    report = split_report(split, scores)
    assert report["roc_auc"] < 1.0
    assert report["by_text_height_cells"]["0-4"] == {"frames": 1, "missed": 1, "recall": 0.0}
    assert report["by_text_height_cells"]["16-32"]["missed"] == 0
    assert report["by_background"]["us"]["missed"] == 1
