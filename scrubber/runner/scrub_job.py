"""Scrub a file or a folder tree (``scrubber scrub``): outputs mirrored, quarantine kept apart.

Each input is read, run through :func:`scrubber.pipeline.scrub_instance` and either written to the
output tree (atomically: a temporary name, flushed, renamed) or, when quarantined, copied as it
was into ``<quarantine>/<reason>/<relative path>`` with a ``.json`` note that says why (reason,
message, scores, proposed boxes: no header values, no OCR text) and a ``.png`` preview
(:mod:`scrubber.runner.quarantine`). Nothing is ever written to the output for a
quarantined input, and a failure on one file never stops the job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scrubber.deid import Deidentifier
from scrubber.detect.classifier import TextClassifier
from scrubber.detect.ocr import OcrEngine
from scrubber.dicom_io import commit_instance, looks_like_dicom, read_instance, stage_instance
from scrubber.errors import ConfigError, ScrubberError
from scrubber.pipeline import InstanceResult, Outcome, QuarantineReason, ScrubConfig, scrub_instance
from scrubber.runner.deid_job import mirror_plan, resolve_destination
from scrubber.runner.quarantine import commit_staged, discard_staged, stage_quarantine

__all__ = ["ScrubJob", "ScrubOutcome"]


@dataclass(frozen=True)
class ScrubOutcome:
    """What happened to one input file (paths, slugs and counts only: no PHI).

    Attributes
    ----------
    input : Path
        The input file.
    output : Path or None
        Where the scrubbed or clean file was written, or where the quarantined original was
        copied; ``None`` for skipped files.
    status : str
        ``clean``, ``scrubbed``, ``quarantined`` or ``skipped`` (not DICOM by content).
    reason : str or None
        Quarantine or skip reason.
    message : str or None
        Human explanation (never quotes header values or OCR text).
    result : InstanceResult or None
        The pipeline's figures (``dataset`` dropped).
    seconds : float
        Wall time for the file.
    """

    input: Path
    output: Path | None
    status: str
    reason: str | None = None
    message: str | None = None
    result: InstanceResult | None = None
    seconds: float = 0.0

    def report(self) -> dict[str, object]:
        """Return the outcome as a JSON-ready dictionary (no PHI)."""
        row: dict[str, object] = {
            "input": str(self.input),
            "output": str(self.output) if self.output else None,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }
        if self.result is not None:
            row.update(
                frames=self.result.frames,
                flags=list(self.result.flags),
                max_score=round(max(self.result.scores), 4) if self.result.scores else None,
                ocr_frames=self.result.ocr_frames,
                regions=self.result.regions,
                redacted_regions=self.result.redacted_regions,
                boxes=len(self.result.boxes),
                overlays_removed=self.result.overlays_removed,
                pixels_changed=self.result.pixels_changed,
            )
        return row


class ScrubJob:
    """Scrub a file or folder tree into an output location and a quarantine location.

    Parameters
    ----------
    source : Path
        An input file or folder.
    destination : Path
        The output file (file input) or folder (mirrors the input tree).
    quarantine : Path
        Folder receiving quarantined originals (outside the output and the input).
    classifier, engine, deidentifier
        The loaded models and the project's de-identifier.
    config : ScrubConfig, optional
        Policy and switches.
    protected : list of Path, optional
        Files that must not end up inside the output (the re-identification key).

    Raises
    ------
    ConfigError
        If the paths overlap or the input is missing.
    """

    def __init__(
        self,
        source: Path,
        destination: Path,
        quarantine: Path,
        *,
        classifier: TextClassifier,
        engine: OcrEngine,
        deidentifier: Deidentifier,
        config: ScrubConfig | None = None,
        protected: list[Path] | None = None,
    ) -> None:
        self.source = Path(source)
        self.destination = resolve_destination(self.source, Path(destination), protected or [])
        self.quarantine = Path(quarantine)
        out_root = self.destination if self.source.is_dir() else self.destination.parent
        for a, b in ((self.quarantine, out_root), (self.quarantine, self.source)):
            if _overlaps(a, b):
                raise ConfigError(
                    f"The quarantine folder {self.quarantine} overlaps the input or the output; "
                    "keep it apart so quarantined originals never reach the output."
                )
        self.classifier = classifier
        self.engine = engine
        self.deidentifier = deidentifier
        self.config = config or ScrubConfig()

    def plan(self) -> list[tuple[Path, Path]]:
        """List ``(input, output)`` pairs, mirroring the input tree.

        Returns
        -------
        list of tuple of (Path, Path)
            One pair per input file, sorted.
        """
        return mirror_plan(self.source, self.destination)

    def run(self, plan: list[tuple[Path, Path]]) -> Iterator[ScrubOutcome]:
        """Scrub every pair in order, yielding each outcome once its file is in place.

        Parameters
        ----------
        plan : list of tuple of (Path, Path)
            Pairs from :meth:`plan`.

        Yields
        ------
        ScrubOutcome
            One per pair.
        """
        for source, target in plan:
            yield self.run_one(source, target)

    def run_one(self, source: Path, target: Path) -> ScrubOutcome:
        """Scrub one file and write its output (or its quarantine copy) before returning.

        Parameters
        ----------
        source : Path
            The input file.
        target : Path
            Where its output goes.

        Returns
        -------
        ScrubOutcome
            What happened; errors are caught and typed, never raised.
        """
        start = time.perf_counter()
        if not looks_like_dicom(source):
            return ScrubOutcome(
                source,
                None,
                "skipped",
                "not_dicom",
                "not DICOM by content; left out of the output",
                seconds=time.perf_counter() - start,
            )
        try:
            dataset = read_instance(source)
        except ScrubberError as exc:
            result = InstanceResult(
                outcome=Outcome.QUARANTINED,
                reason=QuarantineReason.UNREADABLE,
                message=str(exc),
            )
        else:
            result = scrub_instance(
                dataset,
                classifier=self.classifier,
                engine=self.engine,
                deidentifier=self.deidentifier,
                config=self.config,
            )
        if result.outcome is not Outcome.QUARANTINED and result.dataset is not None:
            try:
                commit_instance(stage_instance(result.dataset, target), target)
            except ScrubberError as exc:
                result.outcome = Outcome.QUARANTINED
                result.reason = QuarantineReason.INTERNAL_ERROR
                result.message = f"The output could not be written: {exc}"
            else:
                result.dataset = None
                return ScrubOutcome(
                    source,
                    target,
                    result.outcome.value,
                    result=result,
                    seconds=time.perf_counter() - start,
                )
        result.dataset = None
        held = self._hold(source, result)
        return ScrubOutcome(
            source,
            held,
            Outcome.QUARANTINED.value,
            result.reason.value if result.reason else QuarantineReason.INTERNAL_ERROR.value,
            result.message,
            result=result,
            seconds=time.perf_counter() - start,
        )

    def _hold(self, source: Path, result: InstanceResult) -> Path:
        """Copy the original into the quarantine with its note and preview; return the copy."""
        relative = Path(source.name) if self.source.is_file() else source.relative_to(self.source)
        staged = stage_quarantine(source, self.quarantine, relative, result)
        try:
            commit_staged(staged)
        finally:
            discard_staged(staged)
        return staged[0][1]


def _overlaps(a: Path, b: Path) -> bool:
    ra, rb = a.resolve(), b.resolve()
    return ra == rb or rb in ra.parents or ra in rb.parents
