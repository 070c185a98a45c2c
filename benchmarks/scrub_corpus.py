"""Scrub the real-world corpus and check the outputs against its labels (issue 5's bar).

    python benchmarks/scrub_corpus.py [--corpus ../shared/corpus] [--only PATTERN] [--json OUT]
        [--label phi] [--threads 2] [--ocr rapidocr] [--no-tesseract]
        [--no-reread | --reread-contrast | --reread-verify-every-frame]

For every file of ``labels.json``: read it, run :func:`scrubber.pipeline.scrub_instance` with
default settings, and record the outcome. Then, per label:

* ``phi`` files that were released: every frame of the output is rendered and read by two OCR
  engines (the pipeline's own and Tesseract, from Debian's tesseract-ocr, when installed); a
  ``phi_token`` counts as legible when either engine's text contains it, fuzzily (case, spaces and
  punctuation ignored; tokens of four or more characters with an 85% partial match);
* ``presidio/0_ORIGINAL_compressed.dcm``: the share of each ground-truth word box that is black in
  the output's stored values;
* ``none`` images: PixelData byte-identical and not quarantined;
* files pydicom cannot decode: quarantined with a reason;
* any file: no crash (an ``internal_error`` counts as one).

Timing: per stage (classify, OCR, decide, redact, verify) summed over the run and divided by the
number of frames OCR read, i.e. seconds per flagged frame. ``reread_frames`` counts the frames the
first read found empty and read again enlarged (:class:`scrubber.detect.ocr.Reread`; the pipeline's
default unless ``--no-reread``).

Only paths, labels, counts, reasons and timings are printed; tokens are counted, never shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scrubber.deid import DeidConfig, Deidentifier  # noqa: E402
from scrubber.detect import load_classifier  # noqa: E402
from scrubber.detect.ocr import DEFAULT_REREAD, load_engine  # noqa: E402
from scrubber.dicom_io import read_instance  # noqa: E402
from scrubber.errors import ScrubberError  # noqa: E402
from scrubber.pipeline import InstanceResult, Outcome, ScrubConfig, scrub_instance  # noqa: E402
from tests.legibility import leaked_tokens, presidio_coverage  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
SECRET = b"scrub-corpus-evaluation-secret-0123456789"
PRESIDIO = "presidio/0_ORIGINAL_compressed.dcm"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PRESIDIO_KEYS = ("presidio_boxes", "presidio_boxes_95", "presidio_min_share")


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; exit 0 when every criterion holds, 1 otherwise."""
    parser = argparse.ArgumentParser(description="Scrub the corpus and check against labels")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--only", help="glob on relative paths (e.g. 'pydicom-data/*')")
    parser.add_argument("--label", help="only files with this burned_in label (e.g. phi)")
    parser.add_argument("--json", type=Path, help="write per-file results and the summary here")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ocr", default="rapidocr")
    parser.add_argument("--no-tesseract", action="store_true", help="check with one engine only")
    reread = parser.add_mutually_exclusive_group()
    reread.add_argument("--no-reread", action="store_true", help="never read frames enlarged")
    reread.add_argument(
        "--reread-contrast", action="store_true", help="stretch contrast on the enlarged re-read"
    )
    reread.add_argument(
        "--reread-verify-every-frame",
        action="store_true",
        help="verification re-reads every redacted frame enlarged, not only those first enlarged",
    )
    args = parser.parse_args(argv)
    if args.no_reread:
        config = ScrubConfig(reread=None)
    else:
        config = ScrubConfig(
            reread=dataclasses.replace(
                DEFAULT_REREAD,
                contrast=args.reread_contrast,
                verify_every_frame=args.reread_verify_every_frame,
            )
        )

    labels = json.loads((args.corpus / "labels.json").read_text(encoding="utf-8"))
    classifier = load_classifier(threads=args.threads)
    engine = load_engine(args.ocr, threads=args.threads)
    tesseract = not args.no_tesseract and shutil.which("tesseract") is not None
    deidentifier = Deidentifier(DeidConfig(project="CORPUS"), SECRET, None)
    rows: list[dict[str, Any]] = []
    seconds: Counter[str] = Counter()
    ocr_frames = reread_frames = 0
    started = time.perf_counter()
    for rel, label in sorted(labels.items()):
        if args.only and not fnmatch.fnmatch(rel, args.only):
            continue
        if args.label and label["burned_in"] != args.label:
            continue
        row: dict[str, Any] = {"file": rel, "label": label["burned_in"]}
        t0 = time.perf_counter()
        try:
            ds = read_instance(args.corpus / "files" / rel)
        except ScrubberError as exc:
            row.update(outcome="quarantined", reason="unreadable", error=exc.reason)
            rows.append(row)
            continue
        keyword = next((k for k in _PIXEL_KEYWORDS if ds.get(k) is not None), None)
        before = bytes(ds[keyword].value) if keyword else None
        result: InstanceResult = scrub_instance(
            ds, classifier=classifier, engine=engine, deidentifier=deidentifier, config=config
        )
        row.update(
            outcome=result.outcome.value,
            reason=result.reason.value if result.reason else None,
            frames=result.frames,
            ocr_frames=result.ocr_frames,
            reread_frames=result.reread_frames,
            redacted_regions=result.redacted_regions,
            max_score=round(max(result.scores), 4) if result.scores else None,
            flags=list(result.flags),
            seconds=round(time.perf_counter() - t0, 2),
        )
        seconds.update(result.seconds)
        ocr_frames += result.ocr_frames
        reread_frames += result.reread_frames
        if result.outcome is not Outcome.QUARANTINED and result.dataset is not None:
            out = result.dataset
            row["pixels_identical"] = (
                before is not None
                and keyword is not None
                and out.get(keyword) is not None
                and bytes(out[keyword].value) == before
            )
            tokens = list(label.get("phi_tokens") or [])
            if label["burned_in"] == "phi" and tokens:
                row["tokens"] = len(tokens)
                row["tokens_legible"] = leaked_tokens(out, tokens, engine, tesseract)
            if rel == PRESIDIO:
                shares = presidio_coverage(out, args.corpus)
                row["presidio_boxes"] = len(shares)
                row["presidio_boxes_95"] = sum(s >= 0.95 for s in shares)
                row["presidio_min_share"] = round(min(shares), 4)
        rows.append(row)
        print(
            f"{row['outcome']:<11} {row.get('reason') or '':<22} {row['label']:<13} {rel}"
            + (
                f"  tokens legible {row['tokens_legible']}/{row['tokens']}"
                if "tokens" in row
                else ""
            )
            + f"  {row.get('seconds', 0)} s",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    summary = summarise(rows, labels)
    summary.update(
        seconds=round(elapsed, 1),
        ocr_frames=ocr_frames,
        reread_frames=reread_frames,
        reread=None if config.reread is None else dataclasses.asdict(config.reread),
        seconds_per_flagged_frame={
            stage: round(total / max(1, ocr_frames), 3)
            for stage, total in sorted(seconds.items())
            if stage in ("ocr", "decide", "redact", "verify")
        },
        ocr_engine=args.ocr,
        check_engines=[args.ocr, *(["tesseract"] if tesseract else [])],
        threads=args.threads,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
    )
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "files": rows}, indent=1) + "\n")
    return 0 if summary["passed"] else 1


def summarise(rows: list[dict[str, Any]], labels: dict[str, Any]) -> dict[str, Any]:
    """Condense per-file rows into the figures and pass/fail of issue 5's bar."""
    phi = [r for r in rows if r["label"] == "phi"]
    phi_held = [r["file"] for r in phi if r["outcome"] == "quarantined"]
    phi_leaks = [r["file"] for r in phi if r.get("tokens_legible")]
    none = [r for r in rows if r["label"] == "none"]
    none_bad = {
        r["file"]: r.get("reason") or "pixels changed"
        for r in none
        if r["outcome"] == "quarantined" or not r.get("pixels_identical", False)
    }
    undecodable = [
        r
        for r in rows
        if labels[r["file"]].get("decodes_with_pydicom_pylibjpeg") is False
        and labels[r["file"]]["burned_in"] != "n/a"
    ]
    undecodable_released = [r["file"] for r in undecodable if r["outcome"] != "quarantined"]
    crashes = [r["file"] for r in rows if r.get("reason") == "internal_error"]
    presidio = next((r for r in rows if r["file"] == PRESIDIO), None)
    coverage_ok = presidio is None or (
        presidio.get("presidio_boxes") is not None
        and presidio["presidio_boxes_95"] == presidio["presidio_boxes"]
    )
    figures: dict[str, Any] = {
        "files": len(rows),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
        "quarantine_reasons": dict(Counter(r["reason"] for r in rows if r.get("reason"))),
        "phi_files": len(phi),
        "phi_quarantined": phi_held,
        "phi_quarantined_share": round(len(phi_held) / max(1, len(phi)), 4),
        "phi_files_with_legible_tokens": phi_leaks,
        "none_images": len(none),
        "none_not_identical_or_quarantined": none_bad,
        "none_exception_share": round(len(none_bad) / max(1, len(none)), 4),
        "undecodable_files": len(undecodable),
        "undecodable_released": undecodable_released,
        "crashes": crashes,
        "presidio": None
        if presidio is None
        else {
            k: presidio.get(k)
            for k in ("presidio_boxes", "presidio_boxes_95", "presidio_min_share")
        },
    }
    figures["passed"] = bool(
        not phi_leaks
        and figures["phi_quarantined_share"] <= 0.10
        and figures["none_exception_share"] <= 0.02
        and not undecodable_released
        and not crashes
        and coverage_ok
    )
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
