"""Overlay planes of the corpus: read as masks, and removed without harm to the rest."""

from __future__ import annotations

from pathlib import Path

from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.overlays import find_overlays, iter_overlay_groups, overlay_mask
from scrubber.dicom_io.pixels import iter_frames
from scrubber.errors import ScrubberError
from scrubber.redact import remove_overlays
from tests.conftest import CORPUS, require_shared


def test_every_corpus_overlay_reads_and_goes(tmp_path: Path) -> None:
    files = require_shared(CORPUS / "files", "The real-world corpus")
    with_overlays, drawn_pixels = [], 0
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        try:
            ds = read_instance(path)
        except ScrubberError:
            continue
        planes = find_overlays(ds)
        if not planes:
            continue
        rel = path.relative_to(files).as_posix()
        with_overlays.append(rel)
        pixel_data = ds.get("PixelData")
        for plane in planes:
            frame = next(iter_frames(ds, keep_unused_bits=True)) if plane.embedded else None
            mask = overlay_mask(ds, plane, frame)
            assert mask.shape == (int(ds.Rows), int(ds.Columns)), rel
            drawn_pixels += int(mask.sum())
        assert remove_overlays(ds) == len(planes), rel
        assert list(iter_overlay_groups(ds)) == [], rel
        if not any(plane.embedded for plane in planes):
            assert ds.get("PixelData") == pixel_data, rel  # separate planes: pixels untouched
        write_instance(ds, tmp_path / rel)
        assert find_overlays(read_instance(tmp_path / rel)) == [], rel
    assert len(with_overlays) >= 6
    assert drawn_pixels > 500
