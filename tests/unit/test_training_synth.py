"""The synthetic training-data generator: reproducible, labelled, fonts split as promised."""

from __future__ import annotations

import numpy as np
import pytest

from scrubber.detect.model_input import CHANNELS, INPUT_SIZE, model_input
from training.synth import HELD_OUT_FAMILIES, available_fonts, generate, make_sample


def test_same_seed_same_frames_different_seed_different_frames() -> None:
    first = [s.view for s in generate(5, 6)]
    again = [s.view for s in generate(5, 6)]
    other = [s.view for s in generate(6, 6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other, strict=True)
    )


def test_start_offset_reproduces_the_same_frame() -> None:
    whole = list(generate(11, 4))
    tail = list(generate(11, 2, start=2))
    assert np.array_equal(whole[3].view, tail[1].view)


def test_positives_carry_boxes_inside_the_frame_where_pixels_changed() -> None:
    for index in range(12):
        rng = np.random.default_rng([3, index])
        sample = make_sample(rng, text=True)
        assert sample.has_text and sample.boxes
        rows, columns = sample.view.shape[:2]
        for x, y, w, h in sample.boxes:
            assert 0 <= x < columns and 0 <= y < rows and w > 0 and h > 0
            assert x + w <= columns and y + h <= rows
            # text lines are at least 6 pixels in one direction (rotated text stands up)
            assert max(w, h) >= 6


def test_negatives_have_no_boxes() -> None:
    for index in range(12):
        sample = make_sample(np.random.default_rng([4, index]), text=False)
        assert not sample.has_text and sample.boxes == []
        assert sample.view.dtype == np.uint8 and sample.view.ndim in (2, 3)


def test_text_changes_the_pixels_of_its_box() -> None:
    """The same background with and without text differs inside the boxes."""
    sample = make_sample(np.random.default_rng([9, 1]), text=True)
    view = sample.view.astype(np.int16)
    for x, y, w, h in sample.boxes[:3]:
        patch = view[y : y + h, x : x + w]
        assert patch.max() - patch.min() >= 20


def test_held_out_fonts_are_disjoint_from_training_fonts() -> None:
    train = {s_font for s in generate(21, 30, font_split="train") for s_font in s.fonts}
    held = {s_font for s in generate(21, 30, font_split="held_out") for s_font in s.fonts}
    assert train and held
    assert not train & HELD_OUT_FAMILIES
    assert held <= HELD_OUT_FAMILIES
    families = {f.family for f in available_fonts()}
    assert {"hershey-plain", "hershey-complex-small"} <= families


def test_unknown_font_split_is_refused() -> None:
    with pytest.raises(ValueError, match="font split"):
        make_sample(np.random.default_rng(0), text=True, font_split="bogus")


def test_model_input_of_generated_frames_has_the_contract_shape() -> None:
    for sample in generate(2, 4):
        x = model_input(sample.view)
        assert x.shape == (len(CHANNELS), INPUT_SIZE, INPUT_SIZE) and x.dtype == np.uint8
