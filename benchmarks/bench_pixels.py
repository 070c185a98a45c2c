"""Decoded frames per second per transfer syntax, next to pydicom's own decode, and redaction speed.

For every corpus image both sides can decode, grouped by transfer syntax and measured side by side
in one run:

* ``pydicom``: ``Dataset.pixel_array`` (all frames at once, pydicom's defaults);
* ``scrubber decode``: :func:`scrubber.dicom_io.pixels.iter_frames` (frame by frame, stored values);
* ``scrubber redact``: decode, paint the top tenth of every frame, re-encode by the policy, and
  write the file (atomic, flushed).

Usage::

    python benchmarks/bench_pixels.py [FOLDER] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom

from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.errors import ScrubberError
from scrubber.redact import Box, redact_instance

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "files"


def _usable(folder: Path, scratch: Path) -> dict[str, list[tuple[Path, int]]]:
    """Files every side can process, by transfer syntax (malformed ones scrubber refuses)."""
    groups: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _ = pydicom.dcmread(path, force=True).pixel_array
            description = describe_pixels(read_instance(path))
            _time_redact([(path, description.frames)], scratch)
        except (ScrubberError, Exception):  # skip what either side cannot do
            continue
        groups[description.transfer_syntax].append((path, description.frames))
    return groups


def _time_pydicom(files: list[tuple[Path, int]]) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, _frames in files:
            _ = pydicom.dcmread(path, force=True).pixel_array
    return time.perf_counter() - start


def _time_decode(files: list[tuple[Path, int]]) -> float:
    start = time.perf_counter()
    for path, _frames in files:
        for _frame in iter_frames(read_instance(path)):
            pass
    return time.perf_counter() - start


def _time_redact(files: list[tuple[Path, int]], out: Path) -> float:
    start = time.perf_counter()
    for index, (path, _frames) in enumerate(files):
        ds = read_instance(path)
        description = describe_pixels(ds)
        band = max(1, description.rows // 10)
        redact_instance(ds, [Box(0, 0, description.columns, band)])
        write_instance(ds, out / f"{index}.dcm")
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print one line per transfer syntax."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.folder.exists():
        raise SystemExit(f"{args.folder} does not exist; give a folder of DICOM files")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        groups = _usable(args.folder, Path(scratch))
        for syntax, files in sorted(groups.items()):
            frames = sum(count for _path, count in files)
            times: dict[str, list[float]] = defaultdict(list)
            for _ in range(args.rounds):
                times["pydicom"].append(_time_pydicom(files))
                times["decode"].append(_time_decode(files))
                times["redact"].append(_time_redact(files, Path(scratch)))
            median = {name: statistics.median(values) for name, values in times.items()}
            rows.append(
                {
                    "transfer_syntax": syntax,
                    "name": pydicom.uid.UID(syntax).name,
                    "files": len(files),
                    "frames": frames,
                    "pydicom_frames_per_s": round(frames / median["pydicom"], 1),
                    "decode_frames_per_s": round(frames / median["decode"], 1),
                    "decode_ratio_to_pydicom": round(median["pydicom"] / median["decode"], 2),
                    "redact_frames_per_s": round(frames / median["redact"], 1),
                }
            )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}))
        return
    print(f"machine: {machine}")
    header = ("files", "frames", "pydicom", "decode", "ratio", "redact")
    print(f"{'syntax (frames per second)':52} " + " ".join(f"{h:>8}" for h in header))
    for row in rows:
        print(
            f"{row['name'][:52]:52} {row['files']:8} {row['frames']:8} "
            f"{row['pydicom_frames_per_s']:8} {row['decode_frames_per_s']:8} "
            f"{row['decode_ratio_to_pydicom']:8} {row['redact_frames_per_s']:8}"
        )


if __name__ == "__main__":
    main()
