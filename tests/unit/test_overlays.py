"""Overlay planes, separate and embedded in high bits: found, read as masks, removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.overlays import find_overlays, overlay_mask
from scrubber.dicom_io.pixels import iter_frames
from scrubber.redact import remove_overlays
from scrubber.samples import build_image, build_instance, sample_patients

TEXT = (slice(20, 30), slice(10, 60))


def _embedded(tmp_path: Path) -> tuple[Path, np.ndarray]:
    ds, values = build_image(bits_stored=12, frames=2)
    stored = values.copy()
    stored[:, TEXT[0], TEXT[1]] |= 1 << 15  # "text" drawn in bit 15 on both frames
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.add_new(0x60000010, "US", ds.Rows)
    ds.add_new(0x60000011, "US", ds.Columns)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 15)
    write_instance(ds, tmp_path / "embedded.dcm")
    return tmp_path / "embedded.dcm", values


def test_embedded_overlays_are_found_read_and_removed(tmp_path: Path) -> None:
    path, values = _embedded(tmp_path)
    ds = read_instance(path)
    (plane,) = find_overlays(ds)
    assert plane.embedded and plane.bit_position == 15
    for frame in iter_frames(ds, keep_unused_bits=True):
        mask = overlay_mask(ds, plane, frame)
        assert mask[TEXT].all() and mask.sum() == 10 * 50
    assert remove_overlays(ds) == 1
    assert not [tag for tag in ds.keys() if tag.group == 0x6000]
    raw = np.frombuffer(ds.PixelData, "<u2").reshape(values.shape)
    np.testing.assert_array_equal(raw, values)  # stored values kept, only bit 15 cleared


def test_separate_overlay_planes_are_read_in_place_and_removed() -> None:
    ds = build_instance(sample_patients(1, seed=3)[0], modality="CT")
    pixel_data = ds.PixelData
    (plane,) = find_overlays(ds)
    assert not plane.embedded
    mask = overlay_mask(ds, plane)
    assert mask[2:6, 2:30].all() and mask.sum() == 4 * 28
    assert remove_overlays(ds) == 1
    assert 0x60003000 not in ds and 0x60000010 not in ds
    assert ds.PixelData == pixel_data  # separate planes leave the pixels alone


def test_no_overlay_means_nothing_changes() -> None:
    ds, _values = build_image()
    before = ds.PixelData
    assert find_overlays(ds) == []
    assert remove_overlays(ds) == 0
    assert ds.PixelData == before


def test_an_overlay_with_damaged_attributes_is_still_removed(tmp_path: Path) -> None:
    """Rows given twice, a bit position pydicom reads as bytes: the plane is still found as
    embedded and removed, its high bits cleared (the fuzzer's TypeError, held as an internal
    error before)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    path, values = _embedded(tmp_path)
    ds = read_instance(path)
    ds[0x60000010].value = [ds.Rows, ds.Rows]  # multi-valued Overlay Rows
    tag = Tag(0x6000, 0x0102)  # Overlay Bit Position, unknown to pydicom as stored: UN bytes
    ds._dict[tag] = RawDataElement(tag, "UN", 3, b"\x0f\x00\x00", 0, False, True)
    (plane,) = find_overlays(ds)
    assert plane.embedded and plane.rows == ds.Rows
    assert remove_overlays(ds) == 1
    assert not [t for t in ds.keys() if t.group == 0x6000]
    raw = np.frombuffer(ds.PixelData, "<u2").reshape(values.shape)
    np.testing.assert_array_equal(raw, values)  # every unused high bit cleared
