"""Frames per second of ``scrubber run`` next to a plain pydicom read and write of the same files.

Two inputs, each measured side by side in one run:

* a generated clean CT series (default 2,000 slices of 512 x 512, 12-bit, a body phantom with
  noise that changes from slice to slice; no burned-in text, so the classifier clears every frame
  and OCR never runs);
* the real-world corpus (``../shared/corpus/files``), when present: every kind of file, with OCR
  on the frames that need it.

The floor is ``pydicom.dcmread`` then ``dcmwrite`` of every file into a scratch folder (one
process: pydicom has no parallelism of its own). ``scrubber run`` is started as a user starts it
(a fresh process, a fresh output, ``--workers`` defaulting to the usable cores) and timed from
start to exit, model loading, the ledger, the digest of every input and the flush of every output
included. Both sides run ``--rounds`` times, alternating which goes first; the figure to quote is
the median round's ratio of the two speeds (issue 6's target on the clean series: at least 0.5).

``--device`` and ``--inference`` are passed to ``scrubber run``: on a GPU machine,
``--device cuda`` measures the GPU layout (one inference process per GPU batching the frames of
all workers; the summary's ``inference`` figures show the batches it formed), and
``--inference shared`` measures that layout on the CPU too.

Usage::

    python benchmarks/bench_run.py [--slices 2000] [--size 512] [--workers N] [--rounds 3]
        [--device auto|cpu|cuda] [--inference auto|worker|shared] [--no-corpus] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scrubber.samples import build_instance, sample_patients  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "files"


def write_ct_series(folder: Path, slices: int, size: int, seed: int = 7) -> int:
    """Write a clean CT series of ``slices`` single-frame files; return the frame count."""
    folder.mkdir(parents=True, exist_ok=True)
    patient = sample_patients(1, seed=seed)[0]
    template = build_instance(patient, modality="CT", series="bench")
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    for index in range(slices):
        z = index / max(1, slices - 1)
        ds = copy.deepcopy(template)
        uid = pydicom.uid.generate_uid(entropy_srcs=[str(seed), str(index)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0, 0, round(index * 1.25, 2)]
        body = (x / (0.42 - 0.05 * z)) ** 2 + (y / 0.32) ** 2 < 1
        lungs = ((np.abs(x) - 0.17) / 0.11) ** 2 + (y / (0.18 + 0.05 * z)) ** 2 < 1
        ring = np.abs(np.sqrt((x / 0.4) ** 2 + (y / 0.3) ** 2) - 0.9) < 0.03
        hu = np.full((size, size), -1000.0, np.float32)
        hu[body] = 40
        hu[body & lungs] = -850
        hu[body & ring] = 700
        hu += rng.normal(0, 12, hu.shape).astype(np.float32)
        stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
        ds.Rows = ds.Columns = size
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"CT{index:05d}.dcm", enforce_file_format=True)
    return slices


def _frames(ds: pydicom.Dataset) -> int:
    if "PixelData" not in ds:
        return 0
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):  # a malformed Number of Frames counts as one
        return 1


def plain_read_write(files: list[Path], scratch: Path) -> tuple[float, int, int]:
    """Read and write every file with pydicom; return seconds, files done and frames."""
    scratch.mkdir(parents=True, exist_ok=True)
    done = frames = 0
    start = time.perf_counter()
    for index, path in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                ds.save_as(scratch / f"{index}.dcm")
        except Exception:  # the floor skips what pydicom cannot handle
            continue
        done += 1
        frames += _frames(ds)
    return time.perf_counter() - start, done, frames


def scrubber_run(
    source: Path, work: Path, workers: int | None, options: tuple[str, ...] = ()
) -> tuple[float, dict[str, Any]]:
    """Run ``scrubber run`` on ``source`` in a fresh process; return seconds and its summary."""
    out, summary = work / "out", work / "summary.json"
    command = [
        sys.executable, "-m", "scrubber", "run", str(source), "--out", str(out),
        "-p", "BENCH", "--key-file", str(work / "key.sqlite"), "-q", "--summary", str(summary),
    ]  # fmt: skip
    if workers:
        command += ["--workers", str(workers)]
    command += options
    env = {**os.environ, "SCRUBBER_HOME": str(work / "home")}
    start = time.perf_counter()
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 1):
        raise SystemExit(f"scrubber run failed ({run.returncode}):\n{run.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(summary.read_text())
    return seconds, data


def measure(
    name: str,
    source: Path,
    scratch: Path,
    workers: int | None,
    rounds: int = 3,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Both sides on one input tree, side by side, ``rounds`` times alternating.

    The floor is mostly file-system work and the run mostly CPU work, so a disk that slows down
    for a while moves one side and not the other. Each round measures both, in alternating order,
    each after an untimed ``sync``, and the figure quoted is the median of the rounds' ratios.
    """
    files = sorted(p for p in source.rglob("*") if p.is_file())
    measured: list[dict[str, Any]] = []
    for index in range(rounds):
        sides: dict[str, Any] = {}
        for side in ("plain", "run") if index % 2 == 0 else ("run", "plain"):
            # Untimed: the other side's (or the generator's) written data goes to disk now, not
            # during this side's timing (the floor never flushes; its writeback slowed the run
            # measured after it, and the first round ran during the series' own writeback).
            os.sync()
            if side == "plain":
                sides["plain"] = plain_read_write(files, scratch / f"{name}-plain")
                shutil.rmtree(scratch / f"{name}-plain", ignore_errors=True)
            else:
                sides["run"] = scrubber_run(source, scratch / f"{name}-run", workers, options)
                shutil.rmtree(scratch / f"{name}-run", ignore_errors=True)
        plain_s, plain_files, plain_frames = sides["plain"]
        run_s, summary = sides["run"]
        frames = summary["frames"]
        one = {
            "plain_files": plain_files,
            "plain_frames": plain_frames,
            "plain_seconds": round(plain_s, 2),
            "plain_frames_per_second": round(plain_frames / plain_s, 1),
            "run_seconds": round(run_s, 2),
            "run_frames": frames,
            "run_frames_per_second": round(frames / run_s, 1),
            "ratio": round((frames / run_s) / (plain_frames / plain_s), 3),
            "counts": summary["counts"],
            "ocr_frames": summary["ocr_frames"],
            "stage_seconds": summary["stage_seconds"],
            "inference": summary.get("inference", []),
        }
        measured.append(one)
        print(
            f"{name} round {index + 1}/{rounds}: plain pydicom read+write "
            f"{one['plain_frames_per_second']} frames/s; scrubber run "
            f"{one['run_frames_per_second']} frames/s ({run_s:.1f} s, {summary['ocr_frames']} "
            f"frames through OCR); ratio {one['ratio']}"
            + "".join(
                f"; inference process on {i['device']}: {i['frames']} frames in {i['batches']} "
                f"batches (mean {i['mean_batch']}, largest {i['largest_batch']})"
                for i in one["inference"]
            ),
            flush=True,
        )
    middle = sorted(measured, key=lambda one: float(one["ratio"]))[len(measured) // 2]
    row = {"input": name, "files": len(files), **middle, "rounds": measured}
    ratios = ", ".join(str(one["ratio"]) for one in measured)
    print(
        f"{name}: {len(files)} files, {middle['run_frames']} frames; median round: plain "
        f"{middle['plain_frames_per_second']} frames/s, scrubber run "
        f"{middle['run_frames_per_second']} frames/s, ratio {middle['ratio']} (rounds: {ratios}); "
        f"outcomes {middle['counts']}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--slices", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, help="scrubber run --workers (default: cores)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-corpus", action="store_true")
    parser.add_argument("--no-series", action="store_true", help="the corpus only")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per input (median quoted)"
    )
    parser.add_argument("--device", default="auto", help="scrubber run --device")
    parser.add_argument("--inference", default="auto", help="scrubber run --inference")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    options = ("--device", args.device, "--inference", args.inference)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        scratch = Path(tmp)
        if not args.no_series:
            series = scratch / "ct-series"
            start = time.perf_counter()
            write_ct_series(series, args.slices, args.size)
            print(f"generated {args.slices} CT slices in {time.perf_counter() - start:.1f} s")
            rows.append(measure("ct-series", series, scratch, args.workers, args.rounds, options))
            shutil.rmtree(series)
        if not args.no_corpus and args.corpus.is_dir():
            rows.append(measure("corpus", args.corpus, scratch, args.workers, args.rounds, options))
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
    }
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
