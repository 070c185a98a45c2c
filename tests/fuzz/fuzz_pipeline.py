"""Coverage-guided fuzzing of the reader, the decoders and the pipeline (atheris / libFuzzer).

Each input is a mutated DICOM file (seeded with the sample instances: native, RLE, multi-frame,
RGB, overlays). It is read, then scrubbed with the shipped classifier and an OCR stand-in that
finds nothing (the OCR engine is not what is fuzzed). The contract checked: reading ends in the
instance or a :class:`~scrubber.errors.ScrubberError`; scrubbing ends in an outcome (it catches
everything, failing closed), a quarantined result carries a reason, and that reason is not
``internal_error`` (an exception nobody typed: held, so nothing leaks, but a bug). Anything
else, a hang beyond ``-timeout`` or memory beyond ``-rss_limit_mb`` is a finding.

    python tests/fuzz/fuzz_pipeline.py -max_total_time=60 -rss_limit_mb=2048 -timeout=30 CORPUS
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["scrubber"]):
    from scrubber.deid import DeidConfig, Deidentifier
    from scrubber.detect import load_classifier
    from scrubber.detect.ocr import TextRegion
    from scrubber.dicom_io import read_instance, write_instance
    from scrubber.errors import ScrubberError
    from scrubber.pipeline import Outcome, QuarantineReason, scrub_instance
    from scrubber.samples import iter_sample_instances

_FOLDER = Path(tempfile.mkdtemp(prefix="scrubber-fuzz-"))
_CLASSIFIER = load_classifier(threads=1)
_DEID = Deidentifier(DeidConfig(project="FUZZ"), b"fuzzing-secret-0123456789abcdef", None)


class _NoText:
    name = "none"
    max_side = 4096

    def read(self, view: np.ndarray) -> list[TextRegion]:
        return []


def seed(folder: Path) -> None:
    """Write the sample instances as the fuzzer's seed corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (_rel, ds, _patient) in enumerate(iter_sample_instances(1, seed=5)):
        write_instance(ds, folder / f"seed{index}.dcm")


def one_input(data: bytes) -> None:
    """The fuzz target: read and scrub one mutated file."""
    path = _FOLDER / "input.dcm"
    path.write_bytes(data)
    try:
        ds = read_instance(path)
    except ScrubberError:
        return
    result = scrub_instance(
        ds,
        classifier=_CLASSIFIER,
        engine=_NoText(),
        deidentifier=_DEID,
    )
    if result.outcome is Outcome.QUARANTINED and result.reason is None:
        raise AssertionError("a quarantined result without a reason")
    if result.reason is QuarantineReason.INTERNAL_ERROR:
        # held, so nothing leaks, but an exception nobody typed: a bug the fail-closed handler hid
        raise AssertionError(f"internal error: {result.message}")


if __name__ == "__main__":
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for folder in map(Path, corpus):
        if not folder.is_file() and not any(folder.glob("*")):
            seed(folder)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
