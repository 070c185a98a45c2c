"""The classifier diagnosis groups text frames correctly (no model or torch needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.diagnose import groups, orientation, split_report, tallest_line, write_misses


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


def test_orientation_tells_rotated_lines_from_lines_across() -> None:
    assert orientation([]) == "none"
    assert orientation([[0, 0, 40, 6], [0, 10, 12, 8]]) == "across"  # a short word is not rotated
    assert orientation([[0, 0, 6, 40]]) == "rotated"
    assert orientation([[0, 0, 40, 6], [50, 0, 6, 40]]) == "both"


def test_split_report_gives_recall_by_orientation() -> None:
    labels = np.array([1, 1, 1, 0] * 25)
    scores = np.where(labels == 1, 0.9, 0.1).astype(np.float32)
    scores[1] = 0.05  # a rotated line missed
    boxes = [
        [[0, 0, 6, 40]] if i % 4 == 1 else ([[0, 0, 40, 6]] if y else [])
        for i, y in enumerate(labels)
    ]
    split = {"labels": labels, "kinds": ["ct"] * len(labels), "boxes": boxes}
    report = split_report(split, scores)
    assert report["by_orientation"]["rotated"] == {"frames": 25, "missed": 1, "recall": 0.96}
    assert report["by_orientation"]["across"] == {"frames": 50, "missed": 0, "recall": 1.0}
    assert list(report["by_orientation"]) == ["across", "rotated"]


def test_write_misses_draws_each_missed_text_frame_with_its_boxes(tmp_path: Path) -> None:
    size, count = 32, 12
    inputs = np.full((count, 4, size, size), 60, np.uint8)
    labels = np.array([1, 0] * (count // 2))
    scores = np.where(labels == 1, 0.9, 0.1).astype(np.float32)
    missed = [0, 4, 10]
    scores[missed] = 0.01
    boxes = [[[4, 20, 20, 6]] if y else [] for y in labels]
    split = {"inputs": inputs, "labels": labels, "kinds": ["us"] * count, "boxes": boxes}
    sheets = write_misses(split, scores, 0.5, tmp_path / "sheets", per_sheet=2)
    assert [p.name for p in sheets] == ["misses-00.png", "misses-01.png"]  # 3 frames, 2 a sheet
    first = cv2.imread(str(sheets[0]))
    assert first is not None
    assert first.shape == (size, 4 * size, 3)  # one row: two frames, each mean | max
    last = cv2.imread(str(sheets[1]))
    assert last is not None
    assert last.shape == (size, 4 * size, 3)  # the odd frame is padded with a blank tile
    assert not last[:, 2 * size :].any()
    red = (first[..., 2] > 200) & (first[..., 0] < 60) & (first[..., 1] < 60)
    assert red[20, 4:25].any() and red[20, size + 4 : size + 25].any()  # the box, on both planes
    assert write_misses(split, np.ones(count, np.float32), 0.5, tmp_path / "none") == []
