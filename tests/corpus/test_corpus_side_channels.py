"""No PHI through side doors on real files: corpus headers rewritten to carry canaries.

A bounded sample of ../shared/corpus (the smallest file of each SOP class, plus a real ultrasound
with patient text burned into its pixels and a few files pydicom cannot read or decode) gets a
canary in every free-form string of its header (every PN, LO, SH, LT, ST, UT, UC and AE element
at every depth, private blocks included), then goes through ``scrubber run`` with two workers and
a verbose log, and through the review queue. The canaries, the original instance UIDs and the
text burned into the ultrasound (its ``phi_tokens``) must not appear in the log, the ledger, the
report, the summary, the quarantine notes, the audit table or any typed exception message; the
quarantined originals and their previews are the one place allowed to hold them. Files are only
read from ../shared, never copied into the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

import pydicom
import pytest

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.dicom_io import read_instance
from scrubber.errors import ScrubberError
from tests.canaries import Canaries, leaks_by_place
from tests.conftest import CORPUS, SECRET, require_shared

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

#: Real burned-in PHI whose OCR text must stay out of every side channel.
BURNED_IN: Final = "deid/ultrasounds/RGB_IMAGE.dcm"
#: Files pydicom cannot read or whose pixels it cannot decode (error paths, messages).
BROKEN: Final = ("pydicom/rtplan_truncated.dcm", "fo-dicom/genFile.dcm")
MAX_BYTES: Final = 1_200_000
MAX_GROUPS: Final = 14


def _sample(labels: dict[str, Any], files: Path) -> list[str]:
    """One small file of each of the commonest SOP classes, the burned-in ultrasound, the broken.

    Within a class, the smallest file whose pixels decode (else the smallest file) of at most
    :data:`MAX_BYTES`; classes are taken most common first, :data:`MAX_GROUPS` of them.
    """
    groups: dict[str, list[tuple[bool, int, str]]] = defaultdict(list)
    for rel, label in sorted(labels.items()):
        path = files / rel
        sop = str(label.get("modality_sop") or "").strip()
        if path.is_file() and sop and path.stat().st_size <= MAX_BYTES:
            decodes = bool(label.get("decodes_with_pydicom_pylibjpeg"))
            groups[sop].append((not decodes, path.stat().st_size, rel))
    commonest = sorted(groups, key=lambda sop: (-len(groups[sop]), sop))[:MAX_GROUPS]
    chosen = [min(groups[sop])[2] for sop in commonest]
    for rel in (BURNED_IN, *BROKEN):
        if rel in labels and rel not in chosen:
            chosen.append(rel)
    return chosen


def _plant(source: Path, target: Path, canaries: Canaries) -> bool:
    """Write ``source`` with canaries in its header to ``target``; copy it as is if impossible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(source, force=True)
            if not ds.keys() or canaries.plant(ds) == 0:
                raise ValueError("nothing to plant")
            ds.save_as(target)
            pydicom.dcmread(target, force=True)  # what was written reads back
        except Exception:
            target.write_bytes(source.read_bytes())
            return False
    return True


@pytest.fixture(scope="module")
def corpus_files() -> Path:
    return require_shared(CORPUS / "files", "The real-world corpus")


def test_canaries_in_real_headers_reach_no_side_channel(corpus_files: Path, tmp_path: Path) -> None:
    labels = json.loads((CORPUS / "labels.json").read_text(encoding="utf-8"))
    sample = _sample(labels, corpus_files)
    assert 12 <= len(sample) <= 20, sample  # bounded: a sample, not the corpus
    canaries = Canaries(start=50_000)
    source = tmp_path / "in"
    planted = [rel for rel in sample if _plant(corpus_files / rel, source / rel, canaries)]
    assert len(planted) >= 10, planted
    assert BURNED_IN in planted
    # the text burned into the real ultrasounds: OCR reads it, and it must go no further
    canaries.issued += [
        token
        for rel in sample
        if labels[rel].get("burned_in") == "phi"
        for token in labels[rel].get("phi_tokens", [])
        if len(token) >= 8
    ]
    out, report, summary = tmp_path / "out", tmp_path / "report.jsonl", tmp_path / "summary.json"
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "SCRUBBER_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "scrubber", "run", str(source), "--out", str(out)]
    command += ["-p", "CORPUS", "-j", "2", "-v", "--report", str(report)]
    command += ["--summary", str(summary)]
    run = subprocess.run(command, capture_output=True, env=env, timeout=1500, check=False)
    assert run.returncode in (0, 1), run.stderr.decode(errors="replace")[-3000:]
    rows = {r["input"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert set(rows) == set(sample)
    assert rows[BURNED_IN]["outcome"] in ("scrubbed", "quarantined")
    assert not [r for r in rows.values() if r["outcome"] == "failed"]
    quarantine = tmp_path / "out.quarantine"
    review = [sys.executable, "-m", "scrubber", "review"]
    listing = subprocess.run(
        [*review, "list", str(quarantine), "--json"],
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )
    items = [json.loads(line) for line in listing.stdout.splitlines()]
    shown = [
        subprocess.run(
            [*review, "show", str(quarantine), item["id"]],
            capture_output=True,
            env=env,
            timeout=300,
            check=False,
        )
        for item in items
    ]
    places: dict[str, bytes | str] = {
        "run stdout": run.stdout,
        "run stderr (verbose log of driver and workers)": run.stderr,
        "review list": listing.stdout + listing.stderr,
        "review show": b"".join(s.stdout + s.stderr for s in shown),
        "report": report.read_bytes(),
        "summary": summary.read_bytes(),
    }
    for path in tmp_path.glob("out.ledger.sqlite*"):
        places[path.name] = path.read_bytes()
    for path in quarantine.rglob("*"):
        if path.is_file() and (path.suffix == ".json" or path.name.startswith("review-audit")):
            places[str(path.relative_to(tmp_path))] = path.read_bytes()  # notes, audit table
    # typed errors of the library's entry points on the same files
    deid = Deidentifier(DeidConfig(project="CORPUS"), SECRET, None)
    for rel in sample:
        try:
            deid.deidentify(read_instance(source / rel))
        except ScrubberError as exc:
            places[f"error on {rel}"] = str(exc)
    assert leaks_by_place(canaries, places) == {}
    assert [r for r in rows.values() if r["outcome"] in ("clean", "scrubbed")]
