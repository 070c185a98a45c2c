"""Files per second of metadata de-identification next to a plain pydicom read and write.

Both sides read the same files from disk and write them to a scratch folder, side by side in one
run, several rounds, alternating; the median of the per-round ratios (scrubber speed / plain speed)
is the figure to quote. The plain side is the floor no de-identifier can beat: ``pydicom.dcmread``
then ``dcmwrite``. The scrubber side also flushes each output to disk before renaming it into place
(what makes its writes atomic and durable), which the plain side does not.

Usage::

    python benchmarks/bench_deid.py [FOLDER] [--rounds N] [--json]

FOLDER defaults to ../shared/corpus/files; without it, a generated sample tree is used.
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
from pathlib import Path

import pydicom

from scrubber.deid import DeidConfig, Deidentifier, KeyStore
from scrubber.dicom_io import looks_like_dicom, read_instance, write_instance
from scrubber.errors import ScrubberError
from scrubber.runner import DeidJob, FileStatus
from scrubber.samples import write_samples

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "files"


def _inputs(folder: Path) -> list[Path]:
    """Files both sides can process (so the comparison is like for like)."""
    usable = []
    deid = Deidentifier(DeidConfig(project="BENCH"), b"b" * 32, None)
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if not looks_like_dicom(path):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    plain = pydicom.dcmread(path, force=True)
                    pydicom.dcmwrite(Path(scratch) / "p.dcm", plain)
                ds = read_instance(path)
                deid.deidentify(ds)
                write_instance(ds, Path(scratch) / "s.dcm")
            except (ScrubberError, Exception):  # skip what either side cannot do
                continue
            usable.append(path)
    return usable


def _plain(files: list[Path], out: Path) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, path in enumerate(files):
            ds = pydicom.dcmread(path, force=True)
            pydicom.dcmwrite(out / f"{index}.dcm", ds)
    return time.perf_counter() - start


def _scrubber(files: list[Path], out: Path) -> float:
    """What ``scrubber deid`` does (the same job), re-identification key included."""
    with KeyStore(out.parent / f"{out.name}-key" / "reid-key.sqlite", "BENCH") as store:
        deid = Deidentifier(DeidConfig(project="BENCH"), b"b" * 32, store)
        job = DeidJob(deid, files[0], out / "0.dcm")
        plan = [(path, out / f"{index}.dcm") for index, path in enumerate(files)]
        start = time.perf_counter()
        failed = [o for o in job.run(plan) if o.status is not FileStatus.DEIDENTIFIED]
        elapsed = time.perf_counter() - start
    if failed:
        raise SystemExit(f"{len(failed)} files failed in the benchmark run")
    return elapsed


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        folder = args.folder
        if folder is None:
            folder = DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else scratch / "samples"
            if not folder.exists():
                write_samples(folder, patients=20)
        files = _inputs(folder)
        if not files:
            raise SystemExit(f"no DICOM files both sides can process under {folder}")
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        plain_times: list[float] = []
        scrub_times: list[float] = []
        for _ in range(args.rounds):
            for name, runner, times in (
                ("plain", _plain, plain_times),
                ("scrubber", _scrubber, scrub_times),
            ):
                out = scratch / name
                out.mkdir(exist_ok=True)
                times.append(runner(files, out))
        plain, scrub = statistics.median(plain_times), statistics.median(scrub_times)
        ratios = [p / s for p, s in zip(plain_times, scrub_times, strict=True)]
        result = {
            "folder": str(folder),
            "files": len(files),
            "megabytes": round(megabytes, 1),
            "rounds": args.rounds,
            "plain_pydicom_files_per_s": round(len(files) / plain, 1),
            "scrubber_deid_files_per_s": round(len(files) / scrub, 1),
            "ratio_scrubber_to_plain": round(statistics.median(ratios), 3),
            "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, pydicom {pydicom.__version__}",
        }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
