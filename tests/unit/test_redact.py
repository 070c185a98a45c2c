"""Painting boxes black in stored values and writing the frames back, per syntax and photometric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000Lossless,
    RLELossless,
)

from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.redact import Box, black_value, redact_instance, verify_redaction
from scrubber.redact.instance import RedactionError
from scrubber.render import render_frame
from scrubber.samples import build_image
from tests.pixel_matrix import J2K_SKIP, KINDS, SYNTAXES, encodable, kind_id, syntax_id


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
@pytest.mark.parametrize("syntax", SYNTAXES, ids=syntax_id)
def test_boxes_are_black_on_their_frames_and_nothing_else_changes(
    tmp_path: Path, syntax: str, kind: tuple[str, int, bool, int]
) -> None:
    photometric, bits, signed, planar = kind
    if not encodable(syntax, kind):
        pytest.skip(J2K_SKIP)
    ds, values = build_image(
        photometric=photometric,
        bits_stored=bits,
        signed=signed,
        frames=3,
        planar_configuration=planar,
        transfer_syntax=syntax,
    )
    write_instance(ds, tmp_path / "in.dcm")
    instance = read_instance(tmp_path / "in.dcm")
    boxes = [Box(x=2, y=2, width=30, height=10), Box(x=50, y=40, width=100, height=100, frame=1)]
    result = redact_instance(instance, boxes)
    assert result.frames_painted == 3
    assert result.transfer_syntax_after == syntax  # lossless paths keep their syntax
    write_instance(instance, tmp_path / "out.dcm")
    out = read_instance(tmp_path / "out.dcm")
    verify_redaction(out, boxes)
    description = describe_pixels(out)
    assert description.photometric == photometric or (
        syntax == JPEG2000Lossless and description.photometric == "YBR_RCT"
    )
    black = np.asarray(black_value(out, description))
    for index, frame in enumerate(iter_frames(out)):
        expected = values[index].copy()
        expected[2:12, 2:32] = black
        if index == 1:
            expected[40:, 50:] = black
        np.testing.assert_array_equal(frame, expected)
        view = render_frame(frame, out, description)
        if photometric == "PALETTE COLOR":  # the darkest entry of a palette without black
            darkest = render_frame(np.full((1, 1), black, frame.dtype), out, description)
            assert np.all(view[2:12, 2:32] == darkest[0, 0])
        else:
            assert view[2:12, 2:32].max() <= 2


def test_black_values_per_photometric() -> None:
    cases = {
        ("MONOCHROME2", 12, False): 0,
        ("MONOCHROME2", 16, True): -32768,
        ("MONOCHROME1", 12, False): 4095,
        ("RGB", 8, False): (0, 0, 0),
        ("YBR_FULL", 8, False): (0, 128, 128),
    }
    for (photometric, bits, signed), expected in cases.items():
        ds, _values = build_image(photometric=photometric, bits_stored=bits, signed=signed)
        assert black_value(ds, describe_pixels(ds)) == expected
    ds, _values = build_image(photometric="PALETTE COLOR", bits_stored=8)
    # Red and blue ramp up, green ramps down: luminance 0.299 r + 0.587 g + 0.114 b is lowest
    # at the last entry.
    assert black_value(ds, describe_pixels(ds)) == 255


def test_no_box_or_boxes_outside_leave_pixel_data_byte_identical(tmp_path: Path) -> None:
    ds, _values = build_image(transfer_syntax=RLELossless, frames=2)
    write_instance(ds, tmp_path / "in.dcm")
    instance = read_instance(tmp_path / "in.dcm")
    original = instance.PixelData
    for boxes in ([], [Box(x=500, y=500, width=10, height=10)], [Box(0, 0, 5, 5, frame=9)]):
        result = redact_instance(instance, boxes)
        assert result.pixels_painted == 0
        assert instance.PixelData == original
        assert instance.file_meta.TransferSyntaxUID == RLELossless


def test_overlays_embedded_in_unused_high_bits_do_not_survive(tmp_path: Path) -> None:
    ds, values = build_image(bits_stored=12)
    stored = values[0].copy()
    stored[20:30, 10:60] |= 1 << 15  # an overlay drawn in bit 15 of 16-bit words
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 15)
    write_instance(ds, tmp_path / "in.dcm")
    instance = read_instance(tmp_path / "in.dcm")
    assert describe_pixels(instance).has_unused_high_bits
    redact_instance(instance, [Box(0, 0, 5, 5)])
    raw = np.frombuffer(instance.PixelData, "<u2")
    assert not np.any(raw >> 12)


def test_icons_go_when_pixels_change(tmp_path: Path) -> None:
    ds, _values = build_image()
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 8, 8, 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PixelData = bytes(64)
    ds.IconImageSequence = Sequence([icon])
    redact_instance(ds, [Box(0, 0, 4, 4)])
    assert "IconImageSequence" not in ds


def test_verification_catches_a_box_that_is_not_black() -> None:
    ds, _values = build_image()
    with pytest.raises(RedactionError, match="not black") as caught:
        verify_redaction(ds, [Box(0, 0, 10, 10)])
    assert caught.value.reason == "verification_failed"


def test_segmented_palettes_render_and_give_their_darkest_entry() -> None:
    ds, values = build_image(photometric="PALETTE COLOR", bits_stored=8)
    # Segmented LUTs (PS3.3 C.7.9.2): a discrete first entry, then one linear segment.
    rising = np.array([0, 1, 0, 1, 255, 65535], dtype="<u2").tobytes()
    falling = np.array([0, 1, 65535, 1, 255, 0], dtype="<u2").tobytes()
    for colour, data in (("Red", rising), ("Green", falling), ("Blue", falling)):
        delattr(ds, f"{colour}PaletteColorLookupTableData")
        setattr(ds, f"Segmented{colour}PaletteColorLookupTableData", data)
        ds[f"Segmented{colour}PaletteColorLookupTableData"].VR = "OW"
    description = describe_pixels(ds)
    index = black_value(ds, description)
    assert index == 255  # red rises while green and blue fall: the last entry is darkest
    rgb = render_frame(np.full((2, 2), index, np.uint8), ds, description)
    everything = render_frame(np.arange(256, dtype=np.uint8).reshape(16, 16), ds, description)
    luminance = everything.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert float(rgb[0, 0].astype(float) @ np.array([0.299, 0.587, 0.114])) <= luminance.min() + 1
    assert values.shape[1:] == (description.rows, description.columns)
