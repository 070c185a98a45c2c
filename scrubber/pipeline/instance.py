"""One instance, end to end: inspect, classify, OCR, decide, redact, verify, de-identify.

:func:`scrub_instance` is a pure function of the data set, the configuration and the loaded models:
it reads and writes no files (the caller does, atomically, and copies quarantined inputs). The
data set is changed in place; when the result is a quarantine the caller must not write it and
should keep the original file instead.

The path (see ``docs/design.md``)::

    inspect ─► classify every frame ─► route (score, header flags)
      ─► header terms (only if a frame is routed) ─► OCR the routed frames (identical frames
      once) ─► decide (policy) ─► boxes
      ─► remove overlays ─► redact stored values ─► check boxes are black ─► OCR again
      ─► de-identify metadata ─► result

It fails closed: any frame the classifier is sure about but OCR finds empty, any text left after
redaction, any decoding, encoding or unexpected error ends in quarantine with a reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydicom.dataset import Dataset

from scrubber.deid import Deidentifier, UnsupportedContentError
from scrubber.deid.terms import capture_terms
from scrubber.detect.classifier import TextClassifier, frame_digest
from scrubber.detect.decide import Policy, decide, header_match, is_lone_mark, redaction_boxes
from scrubber.detect.instance import score_instance
from scrubber.detect.ocr import DEFAULT_REREAD, OcrEngine, Reread, TextRegion, read_text
from scrubber.detect.routing import FrameRoute, expects_text, header_flags, route_frame
from scrubber.dicom_io.pixels import (
    UndecodablePixelsError,
    UnsupportedPixelsError,
    describe_pixels,
    iter_frames,
)
from scrubber.errors import ScrubberError, UnreadableDicomError, converting_a_value, where
from scrubber.pipeline.outcome import InstanceResult, Outcome, QuarantineReason
from scrubber.redact import Box, redact_instance, remove_overlays, verify_redaction
from scrubber.redact.instance import RedactionError
from scrubber.render import render_frame

__all__ = ["ScrubConfig", "scrub_instance"]

_log = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265 transfer syntaxes: video, not frames scrubber rewrites.
_VIDEO_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.100.1",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.101.1",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.103.1",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.104.1",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.105.1",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.106.1",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)


@dataclass(frozen=True)
class ScrubConfig:
    """Choices for :func:`scrub_instance`.

    Attributes
    ----------
    policy : Policy
        ``all`` blacks out every text region; ``phi`` keeps text that identifies nobody.
    verify : bool
        Re-read redacted frames with OCR (on by default; switching it off is for benchmarks of
        the stages before it, never for releasing data).
    reread : Reread or None
        When OCR reads a frame a second time, enlarged (default
        :data:`~scrubber.detect.ocr.DEFAULT_REREAD`: twice the size, for frames up to 1,024 pixels
        on a side in which the first read found no text). Verification reads the frames the
        first read enlarged under the same rule, so text found only enlarged is also verified
        enlarged (every redacted frame with ``Reread.verify_every_frame``). ``None`` reads every
        frame once, at its own size.
    """

    policy: Policy = Policy.ALL
    verify: bool = True
    reread: Reread | None = DEFAULT_REREAD


class _QuarantineError(Exception):
    def __init__(self, reason: QuarantineReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def _syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "") or "")


def _inspect(ds: Dataset) -> bool:
    """Tell whether ``ds`` has pixels to scrub; refuse objects scrubber cannot vouch for."""
    if "EncapsulatedDocument" in ds:
        raise _QuarantineError(
            QuarantineReason.UNSUPPORTED_OBJECT,
            "The instance is an encapsulated document (PDF, CDA or similar), whose content "
            "scrubber cannot inspect; review it by hand.",
        )
    if _syntax(ds) in _VIDEO_SYNTAXES:
        raise _QuarantineError(
            QuarantineReason.UNSUPPORTED_OBJECT,
            "The pixel data is a video stream (MPEG or HEVC), which scrubber does not rewrite; "
            "review it by hand.",
        )
    has_pixels = any(keyword in ds for keyword in _PIXEL_KEYWORDS)
    if not has_pixels and "WaveformSequence" in ds:
        raise _QuarantineError(
            QuarantineReason.UNSUPPORTED_OBJECT,
            "The instance holds waveforms only, whose annotations scrubber does not inspect; "
            "review it by hand.",
        )
    return has_pixels


def _views(ds: Dataset, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    description = describe_pixels(ds)
    for index, frame in zip(indices, iter_frames(ds, indices=indices), strict=True):
        yield index, render_frame(frame, ds, description)


def _read_frames(
    ds: Dataset,
    indices: list[int],
    engine: OcrEngine,
    reread: Reread | None,
    enlarge: set[int] | None = None,
) -> tuple[dict[int, list[TextRegion]], set[int]]:
    """OCR the given frames (identical rendered frames once).

    ``reread`` applies to the frames in ``enlarge`` (to every frame when ``None``). Returns the
    regions per frame and the frames that were read again enlarged.
    """
    found: dict[int, list[TextRegion]] = {}
    seen: dict[bytes, tuple[list[TextRegion], bool]] = {}
    enlarged: set[int] = set()
    for index, view in _views(ds, indices):
        digest = frame_digest(view)
        if digest not in seen:
            rule = reread if enlarge is None or index in enlarge else None
            result = read_text(engine, view, reread=rule)
            seen[digest] = (result.regions, result.reread)
        found[index], again = seen[digest]
        if again:
            enlarged.add(index)
    return found, enlarged


def scrub_instance(
    ds: Dataset,
    *,
    classifier: TextClassifier,
    engine: OcrEngine,
    deidentifier: Deidentifier,
    config: ScrubConfig | None = None,
) -> InstanceResult:
    """Scrub one instance: black out burned-in text, verify, and de-identify the header.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance as read (changed in place).
    classifier : TextClassifier
        The loaded frame classifier.
    engine : OcrEngine
        The loaded OCR engine (used for the first read and for verification).
    deidentifier : Deidentifier
        The project's metadata de-identifier.
    config : ScrubConfig, optional
        Policy and switches.

    Returns
    -------
    InstanceResult
        The outcome; ``dataset`` is the instance to write unless it was quarantined.
    """
    config = config or ScrubConfig()
    stages = _Stages()
    result = InstanceResult(outcome=Outcome.CLEAN)
    try:
        _scrub(ds, classifier, engine, deidentifier, config, stages, result)
    except _QuarantineError as exc:
        result.outcome, result.reason, result.message = (
            Outcome.QUARANTINED,
            exc.reason,
            exc.message,
        )
    except UndecodablePixelsError as exc:
        _quarantined(result, QuarantineReason.UNDECODABLE, str(exc))
    except UnsupportedPixelsError as exc:  # includes encoders that cannot write the result
        _quarantined(result, QuarantineReason.UNSUPPORTED_ENCODING, str(exc))
    except UnsupportedContentError as exc:
        _quarantined(result, QuarantineReason.UNSUPPORTED_OBJECT, str(exc))
    except RedactionError as exc:
        _quarantined(result, QuarantineReason.VERIFICATION_FAILED, str(exc))
    except UnreadableDicomError as exc:
        _quarantined(result, QuarantineReason.UNREADABLE, str(exc))
    except ScrubberError as exc:
        _quarantined(result, QuarantineReason.INTERNAL_ERROR, str(exc))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # fail closed: nothing unexpected may release an instance
        # (BaseException: a codec's Rust panic arrives as pyo3's PanicException)
        if converting_a_value(exc):  # a header value pydicom cannot read: the file is damaged
            _quarantined(
                result,
                QuarantineReason.UNREADABLE,
                f"A header value cannot be read as its VR ({type(exc).__name__}); the file is "
                "damaged and is held back. Re-export it from the source.",
            )
        else:
            # Where it happened, not what it said: exception messages (an OCR backend's, a
            # codec's, pydicom's) can quote header values or text read from the pixels.
            _log.error("internal error while scrubbing an instance (%s)", where(exc))
            _quarantined(
                result,
                QuarantineReason.INTERNAL_ERROR,
                f"Scrubbing stopped on an unexpected {type(exc).__name__}; the instance is held "
                "back. Please report it with the log.",
            )
    result.seconds = stages.seconds
    if result.outcome is Outcome.QUARANTINED:
        result.dataset = None
    return result


def _quarantined(result: InstanceResult, reason: QuarantineReason, message: str) -> None:
    result.outcome, result.reason, result.message = Outcome.QUARANTINED, reason, message


def _scrub(
    ds: Dataset,
    classifier: TextClassifier,
    engine: OcrEngine,
    deidentifier: Deidentifier,
    config: ScrubConfig,
    stages: _Stages,
    result: InstanceResult,
) -> None:
    with stages.time("inspect"):
        has_pixels = _inspect(ds)
    boxes: list[Box] = []
    if has_pixels:
        with stages.time("inspect"):
            description = describe_pixels(ds)
            result.frames = description.frames
            result.flags = header_flags(ds)
        with stages.time("classify"):
            scores = [float(s) for s in score_instance(classifier, ds, description)]
        result.scores = scores
        thresholds = classifier.thresholds
        routed = [
            index
            for index, score in enumerate(scores)
            if route_frame(score, result.flags, thresholds) is FrameRoute.OCR
        ]
        found: dict[int, list[TextRegion]] = {}
        enlarged: set[int] = set()
        terms: list[str] = []
        if routed:
            with stages.time("inspect"):
                # the header's identifying values, for the PHI decision and verification only:
                # captured here, before anything changes the header, and only where OCR runs
                terms = sorted(capture_terms(ds).terms())
            # enlarged second reads where text is expected (see Reread.every_routed_frame)
            reread = config.reread
            enlarge = (
                None
                if reread is None or reread.every_routed_frame
                else {
                    index
                    for index in routed
                    if result.flags or expects_text(scores[index], thresholds)
                }
            )
            with stages.time("ocr"):
                found, enlarged = _read_frames(ds, routed, engine, reread, enlarge)
            result.ocr_frames = len(routed)
            result.reread_frames = len(enlarged)
        empty_but_sure = [
            index
            for index in routed
            if not found[index] and expects_text(scores[index], thresholds)
        ]
        if empty_but_sure:
            raise _QuarantineError(
                QuarantineReason.UNCERTAIN_SCORE,
                f"The classifier is sure {len(empty_but_sure)} frame(s) carry burned-in text, but "
                "OCR found none there; one of them is wrong, so a person has to look.",
            )
        with stages.time("decide"):
            reasons: Counter[str] = Counter()
            chosen: dict[int, list[TextRegion]] = {}
            for index, regions in found.items():
                decisions = decide(regions, config.policy, terms=terms)
                reasons.update(d.reason for d in decisions)
                result.regions += len(regions)
                redact = [d.region for d in decisions if d.redact]
                result.redacted_regions += len(redact)
                if redact:
                    chosen[index] = redact
            result.decisions = dict(reasons)
            rows, columns = description.rows, description.columns
            if description.frames > 1 and chosen:
                # cine frames share banners: what is text on one frame is blacked out on all,
                # and boxes from different frames merge like words of one line (no slivers of
                # background left between them to pass for glyphs)
                merged = [r for regions in chosen.values() for r in regions]
                boxes = [Box(*b, None) for b in redaction_boxes(merged, rows, columns)]
            else:
                boxes = [
                    Box(*b, index)
                    for index, regions in chosen.items()
                    for b in redaction_boxes(regions, rows, columns)
                ]
        result.boxes = _box_rows(boxes)  # proposed: what a reviewer sees if verification fails
        if boxes and ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds):
            # float maps are classified and read like any image, and released untouched when
            # clean; painting floats black has no defined display value, so text means review
            raise _QuarantineError(
                QuarantineReason.UNSUPPORTED_ENCODING,
                "Text was found in float pixel data (a parametric map), which scrubber does not "
                "rewrite; review it by hand.",
            )
        with stages.time("redact"):
            result.overlays_removed = remove_overlays(ds)
            if boxes:
                redaction = redact_instance(ds, boxes)
                result.pixels_changed = redaction.pixels_painted > 0
        if result.pixels_changed:
            with stages.time("verify"):
                if config.verify:
                    boxes = _verify_text(
                        ds, boxes, engine, terms, config.policy, config.reread, enlarged
                    )
                verify_redaction(ds, boxes)
        result.boxes = _box_rows(boxes)
    with stages.time("deidentify"):
        deidentifier.deidentify(ds, pixels_cleaned=result.pixels_changed)
        if result.pixels_changed and config.verify:
            # text was blacked out and a second read found none left (PS3.15 Clean Pixel Data)
            ds.BurnedInAnnotation = "NO"
    result.dataset = ds
    result.outcome = Outcome.SCRUBBED if result.pixels_changed else Outcome.CLEAN


def _box_rows(boxes: list[Box]) -> list[tuple[int, int, int, int, int]]:
    return [(-1 if b.frame is None else b.frame, b.x, b.y, b.width, b.height) for b in boxes]


#: A re-read region this much inside black boxes is the detector seeing shapes in flat black (the
#: stored values are checked to be black separately); anything less is text left visible.
_WHOLLY_INSIDE: Final = 0.9
#: Extra redaction rounds for text that only the re-read found.
_MAX_EXTRA_ROUNDS: Final = 2


def _inside_share(region: TextRegion, box: Box, index: int) -> float:
    if not box.applies_to(index):
        return 0.0
    ix = min(region.x + region.width, box.x + box.width) - max(region.x, box.x)
    iy = min(region.y + region.height, box.y + box.height) - max(region.y, box.y)
    if ix <= 0 or iy <= 0:
        return 0.0
    return ix * iy / max(1, region.area)


def _verify_text(
    ds: Dataset,
    boxes: list[Box],
    engine: OcrEngine,
    terms: list[str],
    policy: Policy,
    reread: Reread | None,
    enlarged: set[int],
) -> list[Box]:
    """OCR the redacted frames again until no text the policy blacks out is left.

    Text the re-read finds (the remainder of a line a box did not cover, a line the first read
    missed, a header value) is blacked out in turn and the frames are read again, for at most
    :data:`_MAX_EXTRA_ROUNDS` extra rounds; text still found after them quarantines the instance.
    Lone marks (one glyph, a stroke; see :func:`~scrubber.detect.decide.is_lone_mark`) are left
    alone, as in the first decision. The frames the first read enlarged (``enlarged``) are read
    under the same re-read rule, so text found only enlarged is verified enlarged; with
    ``reread.verify_every_frame``, every redacted frame is. Returns every box painted.
    """
    enlarge = None if reread is not None and reread.verify_every_frame else enlarged
    description = describe_pixels(ds)
    every_frame = description.frames > 1
    for extra in range(_MAX_EXTRA_ROUNDS + 1):
        frames = sorted(
            {i for box in boxes for i in range(description.frames) if box.applies_to(i)}
        )
        found, _ = _read_frames(ds, frames, engine, reread, enlarge)
        missed: dict[int, list[TextRegion]] = {}
        for index, regions in found.items():
            for region in regions:
                inside = sum(_inside_share(region, box, index) for box in boxes)
                if inside >= _WHOLLY_INSIDE:
                    continue
                if is_lone_mark(region):
                    continue
                if (
                    policy is Policy.ALL
                    or (terms and header_match(region.text, terms))
                    or decide([region], policy, terms=terms)[0].redact
                ):
                    missed.setdefault(-1 if every_frame else index, []).append(region)
        new = [
            Box(*b, None if index < 0 else index)
            for index, regions in missed.items()
            for b in redaction_boxes(regions, description.rows, description.columns)
        ]
        if not new:
            return boxes
        if extra == _MAX_EXTRA_ROUNDS:
            break
        boxes = [*boxes, *new]
        redact_instance(ds, boxes)
    raise _QuarantineError(
        QuarantineReason.VERIFICATION_FAILED,
        "After redaction, OCR keeps finding text that the policy blacks out; the instance is "
        "held back for review.",
    )
