"""``scrubber run`` over real files: broken, compressed, multi-frame, text and no text together.

A tree of links to a slice of ../shared/corpus (every file pydicom cannot decode, every file
without pixel data, a spread of text-free images and burned-in PHI in several encodings) goes
through the batch job with two workers; every input must be accounted for, in exactly one place,
and nothing may end as an internal error. ``benchmarks/bench_run.py`` runs the whole corpus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from scrubber.cli.app import app
from tests.conftest import CORPUS, require_shared
from tests.run_checks import check_one_place

RELEASED_PHI = [
    "deid/ultrasounds/GREYSCALE_IMAGE.dcm",
    "pydicom/examples_palette.dcm",
    "wg04-nema/US1_RLE",
    "pydicom-data/OBXXXX1A_rle_2frame.dcm",
]
TEXT_FREE = [
    "pydicom/CT_small.dcm",
    "pydicom/MR_small.dcm",
    "wg04-nema/CT1_J2KR",
    "pydicom-data/MR2_J2KR.dcm",
    "pydicom-data/SC_rgb_2frame.dcm",
]


@pytest.fixture(scope="module")
def labels() -> dict[str, Any]:
    path = require_shared(CORPUS / "labels.json", "The real-world corpus")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def test_a_slice_of_the_corpus_runs_end_to_end(labels: dict[str, Any], tmp_path: Path) -> None:
    broken = [
        rel
        for rel, label in labels.items()
        if label["decodes_with_pydicom_pylibjpeg"] is False or label["burned_in"] == "n/a"
    ]
    chosen = sorted({*broken, *RELEASED_PHI, *TEXT_FREE} - {"fo-dicom/DIRW0007"})  # 65-frame cine
    source = tmp_path / "in"
    for rel in chosen:
        link = source / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(CORPUS / "files" / rel, link)
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    args = ["run", str(source), "--out", str(out), "-p", "CORPUS", "-j", "2", "-q"]
    result = CliRunner().invoke(
        app,
        [*args, "--report", str(report)],
        env={"SCRUBBER_HOME": str(tmp_path / "home"), "COLUMNS": "200"},
    )
    assert result.exit_code == 1, result.output  # the broken ones are quarantined
    rows = {
        r["input"]: r for r in check_one_place(source, out, tmp_path / "out.quarantine", report)
    }
    assert len(rows) == len(chosen)
    assert not [r for r in rows.values() if "internal_error" in r["reasons"]]
    for rel in RELEASED_PHI:
        assert rows[rel]["outcome"] == "scrubbed", rows[rel]
    for rel in TEXT_FREE:
        assert rows[rel]["outcome"] == "clean", rows[rel]
    for rel in set(broken) & set(rows):  # released only when decoded after all, or pixel-less
        row = rows[rel]
        if row["outcome"] in ("clean", "scrubbed") and row["frames"] == 0:
            assert "PixelData" not in pydicom.dcmread(row["output"], force=True), row
