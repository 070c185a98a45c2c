"""The classifier's input: small text survives the reduction to 256 x 256 cells."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from scrubber.detect import CHANNELS, INPUT_SIZE, model_input, model_inputs

MEAN, MAX, MIN, CHROMA = (CHANNELS.index(name) for name in CHANNELS)


def test_channel_order_is_the_documented_one() -> None:
    assert CHANNELS == ("mean_luma", "max_luma", "min_luma", "max_chroma")
    assert INPUT_SIZE == 256


@pytest.mark.parametrize("shape", [(300, 400), (300, 400, 3), (2000, 2000), (64, 80), (256, 256)])
def test_shape_and_dtype(shape: tuple[int, ...]) -> None:
    view = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = model_input(view)
    assert out.shape == (len(CHANNELS), INPUT_SIZE, INPUT_SIZE)
    assert out.dtype == np.uint8


def test_model_inputs_stacks_and_scales_to_unit_range() -> None:
    rng = np.random.default_rng(1)
    views = [
        rng.integers(0, 256, (300, 200), dtype=np.uint8),
        rng.integers(0, 256, (120, 90, 3), dtype=np.uint8),
    ]
    batch = model_inputs(views)
    assert batch.shape == (2, len(CHANNELS), INPUT_SIZE, INPUT_SIZE)
    assert batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    for row, view in zip(batch, views, strict=True):
        np.testing.assert_allclose(row, model_input(view) / np.float32(255.0), atol=1e-6)
    assert model_inputs([]).shape == (0, len(CHANNELS), INPUT_SIZE, INPUT_SIZE)


def test_custom_size() -> None:
    out = model_input(np.zeros((100, 100), np.uint8), size=64)
    assert out.shape == (len(CHANNELS), 64, 64)


@pytest.mark.parametrize("direction", ["vertical", "horizontal"])
@pytest.mark.parametrize("offset", range(8))  # every phase of the stroke against the 7.8 px cells
def test_one_pixel_bright_stroke_in_a_large_frame_survives_in_the_max_channel(
    direction: str, offset: int
) -> None:
    view = np.full((2000, 2000), 20, np.uint8)
    where = 1000 + offset
    if direction == "vertical":
        view[:, where] = 255
    else:
        view[where, :] = 255
    out = model_input(view)
    peak = int(out[MAX].max())
    assert peak == 255  # the stroke's full contrast, at any phase
    assert peak >= int(out[MEAN].max()) + 60  # where plain downsampling leaves a faint smudge
    assert out[MIN].max() == 20
    bright = out[MAX] > 20
    across = bright.any(axis=0) if direction == "vertical" else bright.any(axis=1)
    along = bright.any(axis=1) if direction == "vertical" else bright.any(axis=0)
    assert across.sum() == 1  # localised to the stroke's one cell ...
    assert along.all()  # ... along its whole length


def test_one_pixel_stroke_keeps_full_brightness_at_every_phase() -> None:
    for size in (600, 800, 1024, 2000, 2500):
        for offset in range(12):
            view = np.full((size, size), 20, np.uint8)
            view[:, 100 + offset] = 255
            assert int(model_input(view)[MAX].max()) == 255, (size, offset)


def test_extremes_and_mean_are_exact_block_statistics_for_integer_factors() -> None:
    rng = np.random.default_rng(0)
    view = rng.integers(0, 256, (1024, 1024), dtype=np.uint8)
    out = model_input(view)
    blocks = view.reshape(256, 4, 256, 4)
    assert np.array_equal(out[MAX], blocks.max(axis=(1, 3)))
    assert np.array_equal(out[MIN], blocks.min(axis=(1, 3)))
    assert np.abs(out[MEAN].astype(float) - blocks.mean(axis=(1, 3))).max() <= 0.5


@pytest.mark.parametrize(
    ("rows", "columns"),
    [(512, 512), (768, 1024), (1280, 512), (256, 2048), (2048, 1792), (300, 700)],
)
def test_extremes_are_exact_block_statistics_for_every_block_shape(rows: int, columns: int) -> None:
    """Non-square and uneven factors (after nearest-neighbour filling), luma and chroma alike."""
    from scrubber.detect.model_input import _exact_multiple, _luma_chroma

    rng = np.random.default_rng(rows * columns)
    view = rng.integers(0, 256, (rows, columns, 3), dtype=np.uint8)
    out = model_input(view)
    luma, chroma = _luma_chroma(view)
    assert chroma is not None
    for plane, channels in ((luma, {MAX: np.max, MIN: np.min}), (chroma, {3: np.max})):
        filled, ky, kx = _exact_multiple(plane, 256)
        blocks = filled.reshape(256, ky, 256, kx)
        for channel, reduce in channels.items():
            assert np.array_equal(out[channel], reduce(blocks, axis=(1, 3))), (channel, ky, kx)


@pytest.mark.parametrize("offset", range(8))
def test_one_pixel_dark_stroke_on_bright_ground_survives_in_the_min_channel(offset: int) -> None:
    view = np.full((2000, 2000), 230, np.uint8)
    view[:, 1000 + offset] = 0
    out = model_input(view)
    trough = int(out[MIN].min())
    assert trough == 0
    assert trough <= int(out[MEAN].min()) - 60
    assert out[MAX].min() == 230


def test_small_text_in_a_large_frame_is_visible_in_the_extremes() -> None:
    view = np.zeros((2000, 2000), np.uint8)
    cv2.putText(view, "DOE^JANE 1970", (40, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    out = model_input(view)
    text_cells = out[MAX][:12, :40]
    assert text_cells.max() >= 200
    assert (text_cells >= 128).sum() >= 10
    assert out[MAX][40:, :].max() == 0  # nothing appears where there is no text


def test_coloured_text_shows_in_the_chroma_channel() -> None:
    view = np.full((800, 1000, 3), 100, np.uint8)
    cv2.putText(view, "DOE^JANE", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1)
    out = model_input(view)
    assert out[CHROMA].max() >= 200
    assert out[CHROMA][100:, :].max() == 0  # grey ground has no saturation


@pytest.mark.parametrize("shape", [(500, 600), (500, 600, 3)])
def test_greyscale_gives_zero_chroma(shape: tuple[int, ...]) -> None:
    grey = np.random.default_rng(2).integers(0, 256, shape[:2], dtype=np.uint8)
    view = grey if len(shape) == 2 else np.repeat(grey[:, :, None], 3, axis=2)
    out = model_input(view)
    assert not out[CHROMA].any()


def test_rgb_grey_matches_greyscale_luma() -> None:
    grey = np.random.default_rng(3).integers(0, 256, (400, 300), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(model_input(rgb)[:3], model_input(grey)[:3])


def test_small_frames_are_upscaled_keeping_their_layout() -> None:
    view = np.zeros((64, 80), np.uint8)
    view[:16, :] = 200  # the top quarter is bright
    out = model_input(view)
    assert out.shape == (len(CHANNELS), INPUT_SIZE, INPUT_SIZE)
    for channel in (MEAN, MAX, MIN):
        assert out[channel][:56, :].min() == 200
        assert out[channel][72:, :].max() == 0
    uniform = model_input(np.full((10, 12), 77, np.uint8))
    assert (uniform[:3] == 77).all()


def test_non_contiguous_views_are_accepted() -> None:
    base = np.random.default_rng(4).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    view = base[::2, ::2]
    np.testing.assert_array_equal(model_input(view), model_input(np.ascontiguousarray(view)))


@pytest.mark.parametrize(
    "view",
    [
        np.zeros((100, 100), np.float32),
        np.zeros((100, 100), np.uint16),
        np.zeros((0, 100), np.uint8),
        np.zeros((100, 100, 4), np.uint8),
        np.zeros((100, 100, 1), np.uint8),
        np.zeros((100,), np.uint8),
        np.zeros((2, 100, 100, 3), np.uint8),
    ],
    ids=["float32", "uint16", "empty", "rgba", "one-channel", "1d", "4d"],
)
def test_bad_input_raises_value_error(view: np.ndarray) -> None:
    with pytest.raises(ValueError, match="model_input expects"):
        model_input(view)
