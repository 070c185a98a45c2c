"""The quarantine review queue: list held instances, show them, release or reject them.

The queue is the quarantine tree itself (``<quarantine>/<reason>/<relative path>``, each original
with its ``.json`` note and ``.png`` preview, as :mod:`scrubber.runner.quarantine` writes them);
nothing else has to be kept in step with it. An item's id is a digest of its place in the tree,
so ids never show paths (which can carry names). Every decision goes into an audit table
(``review-audit.sqlite`` at the quarantine's root, owner-only): when, who, which item, what was
decided, the quarantine reason and how many boxes; never a header value or a piece of text.

Releasing applies the reviewer's boxes with :func:`scrubber.pipeline.release_instance` (painted,
read again, header de-identified), writes the result into the output tree atomically, removes the
item from the quarantine and, when the batch run's ledger is given, records the new place there,
so every input stays in exactly one place. Rejecting removes the item and records the decision;
the original stays wherever it came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from scrubber.deid import Deidentifier
from scrubber.detect.decide import Policy
from scrubber.detect.ocr import OcrEngine
from scrubber.dicom_io import read_instance, write_instance
from scrubber.errors import ConfigError, ScrubberError
from scrubber.pipeline import InstanceResult, release_instance
from scrubber.redact import Box

__all__ = ["AUDIT_FILE", "QueueItem", "ReviewError", "ReviewQueue"]

#: The audit table's file, at the quarantine's root.
AUDIT_FILE: Final = "review-audit.sqlite"
_NOTE: Final = ".json"
_PREVIEW: Final = ".png"


class ReviewError(ScrubberError):
    """A review action cannot be carried out (unknown item, bad boxes, missing output)."""

    reason = "review"


@dataclass(frozen=True)
class QueueItem:
    """One held instance (its note's facts; no header values).

    Attributes
    ----------
    id : str
        Stable id (a digest of the item's place in the quarantine).
    reason : str
        The quarantine reason.
    input : str
        The input's path relative to the run's input root (as the note records it).
    path : Path
        The held original.
    held_at : float
        When it was held (POSIX time of the note).
    frames : int
        Frames in the instance.
    scores : list of float
        The classifier's score per frame.
    boxes : list of tuple
        Proposed boxes ``(frame, x, y, width, height)``; ``frame`` -1 means every frame.
    message : str or None
        Why it was held, in words.
    """

    id: str
    reason: str
    input: str
    path: Path
    held_at: float
    frames: int
    scores: list[float] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    message: str | None = None

    def summary(self) -> dict[str, Any]:
        """Return the item as JSON-ready data for lists and the API (no paths, no PHI)."""
        return {
            "id": self.id,
            "reason": self.reason,
            "held_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.held_at)),
            "frames": self.frames,
            "max_score": round(max(self.scores), 4) if self.scores else None,
            "proposed_boxes": len(self.boxes),
            "message": self.message,
        }


def _item_id(relative: str) -> str:
    return hashlib.sha256(relative.encode("utf-8")).hexdigest()[:16]


class ReviewQueue:
    """The review queue over one quarantine folder.

    Parameters
    ----------
    quarantine : Path
        The quarantine root (``<reason>/...`` folders below it).

    Raises
    ------
    ConfigError
        If the folder does not exist.
    """

    def __init__(self, quarantine: Path) -> None:
        self.root = Path(quarantine)
        if not self.root.is_dir():
            raise ConfigError(f"The quarantine folder {self.root} does not exist.")
        self._audit_path = self.root / AUDIT_FILE

    # -- reading ---------------------------------------------------------------------------

    def items(self, reason: str | None = None) -> list[QueueItem]:
        """List held instances, by reason, oldest first.

        Parameters
        ----------
        reason : str, optional
            Only items held for this reason.

        Returns
        -------
        list of QueueItem
            The queue.
        """
        found = []
        for note in self.root.rglob(f"*{_NOTE}"):
            original = note.with_name(note.name[: -len(_NOTE)])
            if note.name.startswith(".") or not original.is_file():
                continue
            item = self._load(original, note)
            if item is not None and (reason is None or item.reason == reason):
                found.append(item)
        return sorted(found, key=lambda i: (i.reason, i.held_at, i.id))

    def _load(self, original: Path, note: Path) -> QueueItem | None:
        try:
            relative = original.relative_to(self.root).as_posix()
            data = json.loads(note.read_text(encoding="utf-8"))
            return QueueItem(
                id=_item_id(relative),
                reason=str(data.get("reason") or relative.split("/", 1)[0]),
                input=str(data.get("input") or relative.split("/", 1)[-1]),
                path=original,
                held_at=note.stat().st_mtime,
                frames=int(data.get("frames") or 0),
                scores=[float(s) for s in data.get("scores") or []],
                boxes=[
                    (int(b[0]), int(b[1]), int(b[2]), int(b[3]), int(b[4]))
                    for b in data.get("proposed_boxes") or []
                ],
                message=data.get("message"),
            )
        except (OSError, ValueError, TypeError, IndexError):
            return None  # a note that is not ours, or half written: not a queue item

    def id_of(self, path: Path) -> str:
        """Return the id of the item whose held original is ``path``."""
        return _item_id(Path(path).relative_to(self.root).as_posix())

    def get(self, item_id: str) -> QueueItem:
        """Return one item.

        Raises
        ------
        ReviewError
            If no held instance has this id.
        """
        for item in self.items():
            if item.id == item_id:
                return item
        raise ReviewError(
            f"No held instance has the id {item_id!r}; list the queue for current ids."
        )

    def preview(
        self,
        item_id: str,
        frame: int = 0,
        boxes: list[tuple[int, int, int, int, int]] | None = None,
    ) -> bytes:
        """Render one frame of an item with boxes outlined, as PNG (the reviewer's view).

        Parameters
        ----------
        item_id : str
            The item.
        frame : int, optional
            The frame (0-based).
        boxes : list of tuple, optional
            Boxes to draw (default: the proposed ones).

        Returns
        -------
        bytes
            The PNG.

        Raises
        ------
        ReviewError
            If the item is unknown, the frame does not exist, or the pixels cannot be rendered.
        """
        from scrubber.runner.quarantine import render_preview

        item = self.get(item_id)
        if not 0 <= frame < max(1, item.frames):
            raise ReviewError(f"Frame {frame} does not exist; the instance has {item.frames}.")
        png = render_preview(item.path, item.boxes if boxes is None else boxes, frame)
        if png is None:
            raise ReviewError("The held instance's pixels cannot be rendered (see its reason).")
        return png

    # -- deciding --------------------------------------------------------------------------

    def release(
        self,
        item_id: str,
        out_root: Path,
        *,
        engine: OcrEngine,
        deidentifier: Deidentifier,
        reviewer: str,
        boxes: list[tuple[int, int, int, int, int]] | None = None,
        policy: Policy = Policy.ALL,
        accept_residual: bool = False,
        ledger: Path | None = None,
        layout: Literal["mirror", "uids"] = "mirror",
    ) -> tuple[Path, InstanceResult]:
        """Release a held instance with the reviewer's boxes into the output tree.

        Parameters
        ----------
        item_id : str
            The item.
        out_root : Path
            The output tree the run wrote to.
        engine : OcrEngine
            OCR for the check after painting.
        deidentifier : Deidentifier
            The project's de-identifier (same settings as the run).
        reviewer : str
            Who decided (recorded in the audit table).
        boxes : list of tuple, optional
            ``(frame, x, y, width, height)``, ``frame`` -1 for every frame; default: the proposed
            boxes.
        policy : Policy, optional
            Which residual text stops the release.
        accept_residual : bool, optional
            Release although text is left outside the boxes.
        ledger : Path, optional
            The batch run's ledger, updated with the input's new place.
        layout : {"mirror", "uids"}, optional
            The output tree's layout.

        Returns
        -------
        tuple of (Path, InstanceResult)
            The output file and the result.

        Raises
        ------
        ReviewError
            If the item is unknown or a box is invalid.
        ResidualTextError
            If text is left and ``accept_residual`` is false (nothing changes then).
        ScrubberError
            If the instance cannot be read, painted or written (nothing changes then).
        """
        _check_reviewer(reviewer)
        item = self.get(item_id)
        final = item.boxes if boxes is None else boxes
        paint = [_to_box(b, item.frames) for b in final]
        ds = read_instance(item.path)
        result = release_instance(
            ds,
            paint,
            engine=engine,
            deidentifier=deidentifier,
            policy=policy,
            accept_residual=accept_residual,
        )
        target = _output_path(out_root, item.input, result, layout)
        write_instance(ds, target)
        result.dataset = None
        self._remove(item)
        if ledger is not None and ledger.exists():
            from scrubber.runner.ledger import Ledger

            with Ledger(ledger, None) as book:
                book.review(
                    item.input, result.outcome.value, [item.reason, "released"], [str(target)]
                )
        self._record(item, "release", reviewer, len(paint), result.outcome.value)
        return target, result

    def reject(self, item_id: str, *, reviewer: str, ledger: Path | None = None) -> QueueItem:
        """Reject a held instance: remove it from the queue and record the decision.

        Parameters
        ----------
        item_id : str
            The item.
        reviewer : str
            Who decided.
        ledger : Path, optional
            The batch run's ledger, updated (outcome ``rejected``).

        Returns
        -------
        QueueItem
            The rejected item (its files are gone).
        """
        _check_reviewer(reviewer)
        item = self.get(item_id)
        self._remove(item)
        if ledger is not None and ledger.exists():
            from scrubber.runner.ledger import Ledger

            with Ledger(ledger, None) as book:
                book.review(item.input, "rejected", [item.reason, "rejected"], [])
        self._record(item, "reject", reviewer, 0, "rejected")
        return item

    def audit(self) -> list[dict[str, Any]]:
        """Return every recorded decision, oldest first."""
        if not self._audit_path.exists():
            return []
        with contextlib.closing(self._audit()) as db:
            rows = db.execute(
                "SELECT at, reviewer, item, action, reason, boxes, frames, outcome "
                "FROM audit ORDER BY id"
            ).fetchall()
        keys = ("at", "reviewer", "item", "action", "reason", "boxes", "frames", "outcome")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- internals -------------------------------------------------------------------------

    def _remove(self, item: QueueItem) -> None:
        for path in (
            item.path,
            item.path.with_name(item.path.name + _NOTE),
            item.path.with_name(item.path.name + _PREVIEW),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _audit(self) -> sqlite3.Connection:
        fresh = not self._audit_path.exists()
        if fresh:
            os.close(os.open(self._audit_path, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(self._audit_path, timeout=30, isolation_level=None)
        db.execute(
            "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, "
            "reviewer TEXT NOT NULL, item TEXT NOT NULL, action TEXT NOT NULL, reason TEXT, "
            "boxes INTEGER, frames INTEGER, outcome TEXT)"
        )
        return db

    def _record(
        self, item: QueueItem, action: str, reviewer: str, boxes: int, outcome: str
    ) -> None:
        with contextlib.closing(self._audit()) as db:
            db.execute(
                "INSERT INTO audit (at, reviewer, item, action, reason, boxes, frames, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    reviewer,
                    item.id,
                    action,
                    item.reason,
                    boxes,
                    item.frames,
                    outcome,
                ),
            )


def _check_reviewer(reviewer: str) -> None:
    if not reviewer.strip() or len(reviewer) > 128:
        raise ReviewError("Say who is reviewing (a name or account, at most 128 characters).")


def _to_box(spec: tuple[int, int, int, int, int], frames: int) -> Box:
    frame, x, y, width, height = (int(v) for v in spec)
    if frame < -1 or frame >= max(1, frames):
        raise ReviewError(f"A box names frame {frame}; the instance has {frames} frame(s).")
    if width <= 0 or height <= 0 or x < 0 or y < 0:
        raise ReviewError("A box needs a position inside the frame and a positive size.")
    return Box(x, y, width, height, None if frame == -1 else frame)


def _output_path(out_root: Path, name: str, result: InstanceResult, layout: str) -> Path:
    if layout == "uids" and result.dataset is not None:
        from scrubber.runner.batch import uid_layout_path

        return uid_layout_path(out_root, result.dataset, name)
    target = (out_root / name).resolve()
    if not target.is_relative_to(out_root.resolve()):
        raise ReviewError("The held instance's recorded path leaves the output tree; refusing.")
    return target
