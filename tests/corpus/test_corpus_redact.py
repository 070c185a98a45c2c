"""A fixed box (the top tenth of every frame) redacted on every decodable corpus image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.redact import Box, redact_instance, verify_redaction
from scrubber.render import render_frame
from tests.conftest import CORPUS, require_shared
from tests.corpus.test_corpus_conformance import _new_errors


def _decodable() -> list[str]:
    labels = json.loads(
        require_shared(CORPUS / "labels.json", "The real-world corpus").read_text("utf-8")
    )
    return sorted(rel for rel, label in labels.items() if label["decodes_with_pydicom_pylibjpeg"])


def test_a_no_op_pass_keeps_pixel_data_byte_identical(tmp_path: Path) -> None:
    for rel in _decodable():
        ds = read_instance(CORPUS / "files" / rel)
        before = ds.get("PixelData")
        description = describe_pixels(ds)
        outside = Box(x=description.columns, y=0, width=10, height=10)  # right of the image
        for boxes in ([], [outside]):
            result = redact_instance(ds, boxes)
            assert result.pixels_painted == 0
            assert ds.get("PixelData") == before, rel
        write_instance(ds, tmp_path / "out.dcm")
        assert read_instance(tmp_path / "out.dcm").get("PixelData") == before, rel


def test_top_band_redaction_on_every_decodable_image(tmp_path: Path) -> None:
    tool = shutil.which("dciodvfy")
    done, lossless, problems = 0, 0, {}
    for rel in _decodable():
        source = CORPUS / "files" / rel
        ds = read_instance(source)
        description = describe_pixels(ds)
        original = [np.array(frame) for frame in iter_frames(ds)]
        band = max(1, description.rows // 10)
        boxes = [Box(x=0, y=0, width=description.columns, height=band)]
        redact_instance(ds, boxes)
        write_instance(ds, tmp_path / rel)
        out = read_instance(tmp_path / rel)
        verify_redaction(out, boxes)
        out_description = describe_pixels(out)
        for index, frame in enumerate(iter_frames(out)):
            if not description.lossy:
                np.testing.assert_array_equal(frame[band:], original[index][band:], err_msg=rel)
            if index not in (0, description.frames - 1):
                continue  # every frame's band is checked in stored values by verify_redaction
            view = render_frame(frame, out, out_description).astype(np.float64)
            luminance = view if view.ndim == 2 else view @ np.array([0.299, 0.587, 0.114])
            # The band is uniform and as dark as anything the frame shows through its own
            # window, LUT or palette (a window that starts below the data keeps it a little
            # above 0, as for every other black pixel of that image).
            assert np.ptp(luminance[:band]) <= 1, f"{rel} frame {index}: band not uniform"
            assert luminance[:band].max() <= luminance.min() + 1, f"{rel} frame {index}"
            if out_description.photometric != "PALETTE COLOR":
                assert luminance[:band].max() <= 32, f"{rel} frame {index}: band not dark"
        lossless += not description.lossy
        if tool is not None:
            new = _new_errors(tool, source, tmp_path / rel, rel)
            if new:
                problems[rel] = new
        done += 1
    assert done >= 289 and lossless >= 200
    assert problems == {}
    if tool is None:
        pytest.skip("dciodvfy is not installed: conformance of the outputs was not checked")
