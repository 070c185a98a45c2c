"""The synthetic training-data generator: reproducible, labelled, fonts split as promised."""

from __future__ import annotations

import numpy as np
import pytest

from scrubber.detect.model_input import CHANNELS, INPUT_SIZE, model_input
from tests.conftest import require_training_extra
from training import synth
from training.synth import HELD_OUT_FAMILIES, available_fonts, generate, make_sample


@pytest.fixture(autouse=True)
def _real_image_sources() -> None:
    """The generator's real-image backgrounds come from packages of the train extra."""
    require_training_extra("skimage", "nilearn", "nibabel")


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


def test_small_profile_draws_small_frames_with_and_without_text() -> None:
    samples = list(generate(21, 40, profile="small"))
    assert all(32 <= s.view.shape[0] <= 192 and 32 <= s.view.shape[1] <= 256 for s in samples)
    assert all(s.view.dtype == np.uint8 and s.view.ndim in (2, 3) for s in samples)
    kinds = {s.kind for s in samples}
    assert "ramp" in kinds and "film" not in kinds and len(kinds) >= 5
    positives = [s for s in samples if s.has_text]
    assert 10 <= len(positives) <= 30
    for sample in positives:
        rows, columns = sample.view.shape[:2]
        for x, y, w, h in sample.boxes:
            assert min(x, y) >= 0 and x + w <= columns and y + h <= rows
    again = list(generate(21, 40, profile="small"))
    assert all(np.array_equal(a.view, b.view) for a, b in zip(samples, again, strict=True))


def test_ramp_backgrounds_are_wrapping_ramps_and_noise_without_text() -> None:
    for index in range(8):
        view = synth._ramp(np.random.default_rng([31, index]), 48, 64)
        assert view.shape[:2] == (48, 64) and view.dtype == np.uint8
    grey = [synth._ramp(np.random.default_rng([32, i]), 40, 40).ndim == 2 for i in range(16)]
    assert any(grey) and not all(grey)  # greyscale and three-channel both occur


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="profile"):
        make_sample(np.random.default_rng(0), text=False, profile="tiny")


def test_model_input_of_generated_frames_has_the_contract_shape() -> None:
    for sample in generate(2, 4):
        x = model_input(sample.view)
        assert x.shape == (len(CHANNELS), INPUT_SIZE, INPUT_SIZE) and x.dtype == np.uint8


@pytest.mark.parametrize("kind", ["mr_template", "photo", "test_pattern"])
@pytest.mark.parametrize("shape", [(64, 64), (350, 800), (1200, 1000)])
def test_real_image_and_pattern_backgrounds_fill_any_frame_size(
    kind: str, shape: tuple[int, int]
) -> None:
    make = {"mr_template": synth._mr_template, "photo": synth._photo}.get(kind, synth._test_pattern)
    for index in range(4):
        view = make(np.random.default_rng([17, index]), *shape)
        assert view.dtype == np.uint8 and view.shape[:2] == shape and view.ndim in (2, 3)
        # something is there: not a blank frame
        assert int(view.max()) - int(view.min()) >= 40


def test_brain_template_backgrounds_show_anatomy_not_noise() -> None:
    """Slices come from the bundled template: large smooth structures, not white noise."""
    view = synth._mr_template(np.random.default_rng([5, 0]), 512, 512).astype(np.float32)
    neighbours = np.corrcoef(view[:, :-1].ravel(), view[:, 1:].ravel())[0, 1]
    assert neighbours > 0.8


def _line(text: str, height: int) -> synth._Line:
    font = next(f for f in available_fonts() if f.family == "hershey-simplex")
    return synth._Line(20, 30, synth._render_text_mask(text, font, height, antialias=False))


def test_a_line_covered_by_later_drawing_is_not_labelled() -> None:
    view = np.full((120, 400), 30, np.uint8)
    line = _line("DOE JOHN 123456", 16)
    synth._blend(view, line.mask, line.x, line.y, (230, 230, 230))
    assert synth._legible(view, line)
    h, w = line.mask.shape
    view[line.y : line.y + h, line.x : line.x + w] = 200  # a banner strip drawn over it
    assert not synth._legible(view, line)


def test_faint_text_below_the_contrast_floor_is_not_labelled() -> None:
    view = np.full((120, 400, 3), 100, np.uint8)
    line = _line("04-SEP-07 20:42", 14)
    synth._blend(view, line.mask, line.x, line.y, (108, 108, 108))
    assert not synth._legible(view, line)
    synth._blend(view, line.mask, line.x, line.y, (255, 0, 0))  # red on grey: chroma counts
    assert synth._legible(view, line)


def test_every_labelled_box_stands_out_from_its_surroundings() -> None:
    for sample in generate(31, 40):
        view = sample.view.astype(np.int16)
        if view.ndim == 2:
            view = view[..., None]
        for x, y, w, h in sample.boxes:
            patch = view[y : y + h, x : x + w]
            assert int((patch.max(axis=(0, 1)) - patch.min(axis=(0, 1))).max()) >= 24


def test_turned_profile_rotates_half_the_text_and_leaves_standard_frames_alone() -> None:
    def rotated_share(samples: list[synth.Sample]) -> float:
        boxes = [b for s in samples for b in s.boxes]
        return sum(h > 1.5 * w for _x, _y, w, h in boxes) / len(boxes)

    standard = [s for s in generate(41, 60) if s.has_text]
    turned = [s for s in generate(41, 60, profile="turned") if s.has_text]
    assert rotated_share(standard) < 0.2
    assert rotated_share(turned) > 0.3
    assert max(max(s.view.shape[:2]) for s in turned) > 256  # device-sized frames, not small ones
    # drawing turned frames leaves the share of the standard ones where it was
    again = [s for s in generate(41, 60) if s.has_text]
    assert all(np.array_equal(a.view, b.view) for a, b in zip(standard, again, strict=True))
