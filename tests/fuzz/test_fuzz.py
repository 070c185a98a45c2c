"""Fuzzing (issue 10): findings stay fixed, and a bounded coverage-guided run finds nothing new.

``fuzz_pipeline.py`` is the atheris harness (reader, decoders, pipeline). Every input it ever made
crash is kept under ``regressions/`` (mutations of the synthetic samples: fake patients only) and
replayed here. The bounded run lasts ``$SCRUBBER_FUZZ_SECONDS`` (45 by default) in CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.detect import TextClassifier, load_classifier
from scrubber.detect.ocr import TextRegion
from scrubber.dicom_io import read_instance
from scrubber.errors import ScrubberError
from scrubber.pipeline import Outcome, QuarantineReason, scrub_instance
from tests.conftest import in_ci

HERE = Path(__file__).resolve().parent
REGRESSIONS = sorted((HERE / "regressions").glob("*.dcm"))


class _NoText:
    name = "none"
    max_side = 4096

    def read(self, view: np.ndarray) -> list[TextRegion]:
        return []


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    return load_classifier(threads=1)


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_known_findings_end_in_a_typed_error_or_quarantine(
    path: Path, classifier: TextClassifier
) -> None:
    try:
        ds = read_instance(path)
    except ScrubberError:
        return
    result = scrub_instance(
        ds,
        classifier=classifier,
        engine=_NoText(),
        deidentifier=Deidentifier(DeidConfig(project="FUZZ"), b"f" * 32, None),
    )
    # released after the fix (a malformed date is emptied), or held for a named reason
    assert result.outcome is not Outcome.QUARANTINED or result.reason is not None
    assert result.reason is not QuarantineReason.INTERNAL_ERROR, result.message


@pytest.mark.slow
def test_a_bounded_fuzzing_run_finds_nothing(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        message = "atheris is not installed (dev extra); .ci/run installs it."
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    seconds = int(os.environ.get("SCRUBBER_FUZZ_SECONDS", "45"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_pipeline.py"),
            f"-max_total_time={seconds}",
            "-rss_limit_mb=2048",
            "-timeout=60",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
        env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"},
    )
    done = re.search(r"Done (\d+) runs", run.stderr)
    findings = sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash", "oom", "timeout"))
    )
    assert run.returncode == 0 and not findings, (findings, run.stderr[-3000:])
    assert done is not None and int(done.group(1)) > 100
    print(f"fuzzed {done.group(1)} inputs in {seconds} s, no finding")
