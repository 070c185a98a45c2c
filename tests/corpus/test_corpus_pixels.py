"""Every frame of every decodable corpus image decodes and renders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scrubber.dicom_io import read_instance
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.errors import InputError
from scrubber.render import render_frame
from tests.conftest import CORPUS, require_shared


def test_every_frame_of_every_decodable_image_decodes_and_renders() -> None:
    labels_path = require_shared(CORPUS / "labels.json", "The real-world corpus")
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    files = CORPUS / "files"
    decoded_files, frames_seen, refused = 0, 0, {}
    for rel, label in sorted(labels.items()):
        try:
            ds = read_instance(Path(files / rel))
            description = describe_pixels(ds)
            count = 0
            for frame in iter_frames(ds):
                expected: tuple[int, ...] = (description.rows, description.columns)
                if description.samples_per_pixel == 3:
                    expected = (*expected, 3)
                assert frame.shape == expected, rel
                if count == 0 or count == description.frames - 1:
                    view = render_frame(frame, ds, description)
                    assert view.dtype == np.uint8 and view.shape[:2] == expected[:2], rel
                count += 1
            assert count == description.frames, rel
        except InputError as exc:
            refused[rel] = exc.reason
            assert not label["decodes_with_pydicom_pylibjpeg"], f"{rel}: {exc}"
            continue
        decoded_files += 1
        frames_seen += count
    assert decoded_files >= 289
    assert frames_seen >= 700
    assert set(refused.values()) <= {
        "not_dicom",
        "unreadable",
        "undecodable",
        "unsupported_pixels",
    }
