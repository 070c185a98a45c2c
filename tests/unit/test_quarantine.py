"""The quarantine folder: original byte for byte, a note without PHI, a preview, owner-only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import cv2
import numpy as np

from scrubber.pipeline import InstanceResult, Outcome, QuarantineReason
from scrubber.runner.quarantine import (
    PREVIEW_MAX_SIDE,
    commit_staged,
    discard_staged,
    stage_quarantine,
)
from tests.burned_in import ultrasound_with_banner


def _held(reason: QuarantineReason, boxes: list[tuple[int, int, int, int, int]]) -> InstanceResult:
    return InstanceResult(
        outcome=Outcome.QUARANTINED,
        reason=reason,
        message="After redaction, OCR keeps finding text.",
        frames=1,
        scores=[0.97],
        boxes=boxes,
    )


def test_a_held_instance_gets_its_original_a_note_and_a_preview(tmp_path: Path) -> None:
    source = tmp_path / "in" / "us.dcm"
    source.parent.mkdir()
    ultrasound_with_banner("MILLER ROSE", "8812345").save_as(source, enforce_file_format=True)
    root = tmp_path / "q"
    result = _held(QuarantineReason.VERIFICATION_FAILED, [(0, 8, 8, 200, 24)])
    staged = stage_quarantine(source, root, Path("site/us.dcm"), result, {"digest": "x"})
    assert all(not final.exists() for _tmp, final in staged)  # nothing final before the rename
    commit_staged(staged)
    held = root / "verification_failed" / "site" / "us.dcm"
    assert held.read_bytes() == source.read_bytes()
    note_text = held.with_name("us.dcm.json").read_text()
    note = json.loads(note_text)
    assert note["reason"] == "verification_failed" and note["proposed_boxes"] == [
        [0, 8, 8, 200, 24]
    ]
    assert note["digest"] == "x"
    assert "MILLER" not in note_text and "8812345" not in note_text
    preview = cv2.imread(str(held.with_name("us.dcm.png")))
    assert preview is not None and max(preview.shape[:2]) <= PREVIEW_MAX_SIDE
    bgr = preview[8, 100].astype(int)  # the top edge of the proposed box, outlined in red
    assert bgr[2] > 200 and bgr[0] < 60 and bgr[1] < 60
    for folder in (root, root / "verification_failed", root / "verification_failed" / "site"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not list(root.rglob(".*.tmp"))


def test_an_undecodable_original_is_held_without_a_preview(tmp_path: Path) -> None:
    source = tmp_path / "broken.dcm"
    source.write_bytes(b"DICM" * 10)
    staged = stage_quarantine(
        source, tmp_path / "q", Path("broken.dcm"), _held(QuarantineReason.UNREADABLE, [])
    )
    commit_staged(staged)
    names = sorted(p.name for p in (tmp_path / "q" / "unreadable").iterdir())
    assert names == ["broken.dcm", "broken.dcm.json"]


def test_discarding_staged_files_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "a.dcm"
    source.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    staged = stage_quarantine(
        source, tmp_path / "q", Path("a.dcm"), _held(QuarantineReason.UNDECODABLE, [])
    )
    discard_staged(staged)
    assert [p for p in (tmp_path / "q").rglob("*") if p.is_file()] == []
