"""Seconds per flagged frame of OCR, decide, redact and verify, per OCR engine, on the CPU.

Synthetic instances with burned-in banners (generated in code, so the figures are comparable from
machine to machine): an 8-bit RGB ultrasound frame (640 x 480) with name and ID, and the same
frame in a 4-frame cine. Each engine scrubs every instance ``--rounds`` times (after one warm-up
pass that loads the models); per stage, the median wall time is divided by the frames OCR read.
Alongside, the same files are read and written by plain pydicom, the floor any scrubber sits on,
and the ratio is reported.

Usage::

    python benchmarks/bench_scrub.py [--engines rapidocr,easyocr] [--threads 2] [--rounds 3]
        [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scrubber.deid import DeidConfig, Deidentifier  # noqa: E402
from scrubber.detect import load_classifier  # noqa: E402
from scrubber.detect.ocr import load_engine  # noqa: E402
from scrubber.dicom_io import read_instance  # noqa: E402
from scrubber.pipeline import Outcome, scrub_instance  # noqa: E402
from tests.burned_in import ultrasound_with_banner  # noqa: E402

STAGES = ("ocr", "decide", "redact", "verify")


def _inputs(folder: Path) -> list[Path]:
    single = ultrasound_with_banner("MILLER ROSE", "8812345")
    path = folder / "us.dcm"
    single.save_as(path, enforce_file_format=True)
    cine = ultrasound_with_banner("KOWALSKI ANNA", "5512093")
    frame = bytes(cine.PixelData)
    cine.NumberOfFrames = 4
    # the banner repeats, the anatomy moves: one byte changed per frame is enough to make
    # the frames distinct (so none is skipped as a repeat)
    frames = [bytearray(frame) for _ in range(4)]
    for index, data in enumerate(frames):
        data[-1 - index] = 200
    cine.PixelData = b"".join(bytes(f) for f in frames)
    cine_path = folder / "cine.dcm"
    cine.save_as(cine_path, enforce_file_format=True)
    return [path, cine_path]


def _plain(files: list[Path], out: Path) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, path in enumerate(files):
            pydicom.dcmwrite(out / f"{index}.dcm", pydicom.dcmread(path))
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="rapidocr,easyocr")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if "easyocr" in engines and importlib.util.find_spec("easyocr") is None:
        print("easyocr is not installed (the easyocr extra); skipping it", file=sys.stderr)
        engines.remove("easyocr")
    classifier = load_classifier(threads=args.threads)
    deidentifier = Deidentifier(DeidConfig(project="BENCH"), b"b" * 32, None)
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "threads": args.threads,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        files = _inputs(scratch)
        (scratch / "plain").mkdir()
        for name in engines:
            engine = load_engine(name, threads=args.threads)
            per_stage: dict[str, list[float]] = defaultdict(list)
            totals, plains, frames = [], [], 0
            for round_ in range(args.rounds + 1):
                stage_sum: dict[str, float] = defaultdict(float)
                frames = 0
                start = time.perf_counter()
                for path in files:
                    result = scrub_instance(
                        read_instance(path),
                        classifier=classifier,
                        engine=engine,
                        deidentifier=deidentifier,
                    )
                    if result.outcome is not Outcome.SCRUBBED:
                        raise SystemExit(f"{path.name}: {result.outcome} ({result.reason})")
                    frames += result.ocr_frames
                    for stage, seconds in result.seconds.items():
                        stage_sum[stage] += seconds
                total = time.perf_counter() - start
                plain = _plain(files, scratch / "plain")
                if round_ == 0:
                    continue  # warm-up: model loading, first-call allocations
                totals.append(total)
                plains.append(plain)
                for stage, seconds in stage_sum.items():
                    per_stage[stage].append(seconds)
            median = statistics.median(totals)
            report[name] = {
                "flagged_frames": frames,
                "seconds_per_flagged_frame": {
                    stage: round(statistics.median(per_stage[stage]) / frames, 3)
                    for stage in STAGES
                },
                "seconds_per_flagged_frame_total": round(median / frames, 3),
                "frames_per_second": round(frames / median, 2),
                "pydicom_read_write_seconds": round(statistics.median(plains), 4),
                "ratio_to_pydicom_read_write": round(median / statistics.median(plains), 1),
            }
            if not args.json:
                print(name, json.dumps(report[name]), flush=True)
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
