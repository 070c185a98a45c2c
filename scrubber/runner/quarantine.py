"""The quarantine folder: originals held back for review, each with a note and a preview.

Layout: ``<quarantine>/<reason>/<relative input path>`` is the original file, byte for byte;
beside it ``<name>.json`` says why (reason slug, message, scores, header flags, proposed boxes,
model versions: no header values, no OCR text) and ``<name>.png`` shows a reviewer the frame with
the proposed boxes outlined (when the pixels decode). The quarantine holds PHI by nature, so
every folder of it is created owner-only (``0700``).

Files are staged under hidden temporary names (``.<name>.<random>.tmp``) and flushed; the caller
renames them into place (:func:`commit_staged`), so a crash never leaves a half-written file
under a final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np

from scrubber.errors import OutputError
from scrubber.pipeline import InstanceResult, QuarantineReason

__all__ = [
    "PREVIEW_MAX_SIDE",
    "commit_staged",
    "discard_staged",
    "make_private_dirs",
    "preview_png",
    "render_preview",
    "stage_bytes",
    "stage_copy",
    "stage_quarantine",
]

#: Longest side of a preview PNG, in pixels.
PREVIEW_MAX_SIDE: Final = 1024
_PRIVATE: Final = 0o700
_BOX_COLOUR: Final = (255, 0, 0)


def make_private_dirs(path: Path, root: Path) -> None:
    """Create ``path`` and every missing folder between it and ``root`` owner-only.

    Parameters
    ----------
    path : Path
        The folder to create.
    root : Path
        The quarantine root (created too, owner-only, if missing).
    """
    root.mkdir(mode=_PRIVATE, parents=True, exist_ok=True)
    os.chmod(root, _PRIVATE)
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if not current.is_dir():
            current.mkdir(mode=_PRIVATE, exist_ok=True)
            os.chmod(current, _PRIVATE)


def _staging(final: Path) -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    return fd, Path(name)


def _stage(final: Path, write: Callable[[BinaryIO], object], what: str) -> Path:
    try:
        fd, tmp = _staging(final)
    except OSError as exc:  # read-only or full folder: nothing was created
        raise OutputError(
            f"Cannot create a file in {final.parent} ({exc.strerror or type(exc).__name__}); "
            "check free space and permissions."
        ) from None
    try:
        with os.fdopen(fd, "wb") as fp:
            write(fp)
            fp.flush()
            os.fdatasync(fp.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(
            f"Cannot {what} {final.parent} ({exc.strerror or type(exc).__name__}); check free "
            "space and permissions."
        ) from None
    return tmp


def stage_bytes(final: Path, data: bytes) -> Path:
    """Write ``data`` to a flushed hidden temporary beside ``final``; return its path.

    Raises
    ------
    OutputError
        If the file cannot be written (nothing is left behind then).
    """
    return _stage(final, lambda fp: fp.write(data), "write into")


def stage_copy(source: Path, final: Path) -> Path:
    """Copy ``source`` to a flushed hidden temporary beside ``final``; return its path.

    Raises
    ------
    OutputError
        If the copy fails (nothing is left behind then).
    """

    def copy(out: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

    return _stage(final, copy, "copy the input into")


def commit_staged(staged: list[tuple[Path, Path]]) -> None:
    """Rename staged temporaries to their final names, in order.

    Raises
    ------
    OutputError
        If a rename fails.
    """
    for tmp, final in staged:
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise OutputError(
                f"Cannot move a finished file into {final.parent} "
                f"({exc.strerror or type(exc).__name__}); check permissions."
            ) from None


def discard_staged(staged: list[tuple[Path, Path]]) -> None:
    """Remove staged temporaries that were not committed."""
    for tmp, _final in staged:
        with contextlib.suppress(OSError):
            tmp.unlink()


def stage_quarantine(
    source: Path,
    quarantine: Path,
    relative: Path,
    result: InstanceResult,
    extra: Mapping[str, object] | None = None,
    *,
    with_preview: bool = True,
) -> list[tuple[Path, Path]]:
    """Stage the original, its JSON note and its preview in the quarantine.

    Parameters
    ----------
    source : Path
        The input file (copied byte for byte).
    quarantine : Path
        The quarantine root.
    relative : Path
        The input's path relative to the input root (a file input: its name).
    result : InstanceResult
        The pipeline's result (reason, message, scores, flags, proposed boxes).
    extra : mapping, optional
        More JSON-ready facts for the note (digest, model versions).
    with_preview : bool, optional
        Render the PNG preview (decodes the file; off for a file that crashed its worker).

    Returns
    -------
    list of tuple of (Path, Path)
        ``(temporary, final)`` pairs, the original first; rename them with
        :func:`commit_staged`.

    Raises
    ------
    OutputError
        If a file cannot be staged (whatever was staged is removed).
    """
    reason = (result.reason or QuarantineReason.INTERNAL_ERROR).value
    final = quarantine / reason / relative
    try:
        make_private_dirs(final.parent, quarantine)
    except OSError as exc:  # read-only or full quarantine: typed, so callers can retry later
        raise OutputError(
            f"Cannot create a folder in the quarantine {quarantine} "
            f"({exc.strerror or type(exc).__name__}); check free space and permissions."
        ) from None
    staged: list[tuple[Path, Path]] = []
    try:
        staged.append((stage_copy(source, final), final))
        note: dict[str, object] = {
            "input": str(relative),
            "reason": reason,
            "message": result.message,
            "frames": result.frames,
            "scores": [round(s, 4) for s in result.scores],
            "flags": list(result.flags),
            "proposed_boxes": [list(b) for b in result.boxes],
            **dict(extra or {}),
        }
        sidecar = final.with_name(final.name + ".json")
        body = (json.dumps(note, indent=2) + "\n").encode("utf-8")
        staged.append((stage_bytes(sidecar, body), sidecar))
        png = preview_png(source, result.boxes, result.scores) if with_preview else None
        if png is not None:
            preview = final.with_name(final.name + ".png")
            staged.append((stage_bytes(preview, png), preview))
    except BaseException:
        discard_staged(staged)
        raise
    return staged


def preview_png(
    source: Path, boxes: list[tuple[int, int, int, int, int]], scores: list[float]
) -> bytes | None:
    """Render the frame a reviewer should see first, proposed boxes outlined in red, as PNG.

    The frame is the first one a box applies to, else the highest-scoring one. Returns ``None``
    when the file's pixels cannot be read (the note says why it was quarantined).
    """
    framed = [b[0] for b in boxes if b[0] >= 0]
    if framed:
        index = min(framed)
    elif scores:
        index = int(np.argmax(scores))
    else:
        index = 0
    return render_preview(source, boxes, index)


def render_preview(
    source: Path, boxes: list[tuple[int, int, int, int, int]], frame: int
) -> bytes | None:
    """Render one frame of a file with boxes outlined in red, as PNG at most 1024 px a side.

    Parameters
    ----------
    source : Path
        A DICOM file.
    boxes : list of tuple
        ``(frame, x, y, width, height)``; ``frame`` -1 applies to every frame.
    frame : int
        The frame to render (clamped to the last one).

    Returns
    -------
    bytes or None
        The PNG, or ``None`` when the pixels cannot be read.
    """
    import cv2

    from scrubber.dicom_io import read_instance
    from scrubber.dicom_io.pixels import describe_pixels, iter_frames
    from scrubber.render import render_frame

    try:
        ds = read_instance(source)
        description = describe_pixels(ds)
        index = max(0, min(frame, description.frames - 1))
        view = render_frame(next(iter_frames(ds, indices=[index])), ds, description)
    except Exception:  # any failure to decode just means no preview
        return None
    rgb = np.ascontiguousarray(view if view.ndim == 3 else np.stack([view] * 3, axis=-1))
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    for frame_index, x, y, w, h in boxes:
        if frame_index in (-1, index):
            cv2.rectangle(rgb, (x, y), (x + w - 1, y + h - 1), _BOX_COLOUR, thickness)
    scale = PREVIEW_MAX_SIDE / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return png.tobytes() if ok else None
