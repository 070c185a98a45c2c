"""Outputs pass dciodvfy (dicom3tools) with no error their input did not already have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.dicom_io import read_instance, write_instance
from scrubber.errors import ScrubberError
from scrubber.runner import deidentify_file
from scrubber.samples import iter_sample_instances
from tests.conftest import CORPUS, SECRET, require_shared, require_tool

pytestmark = pytest.mark.tools

# dciodvfy stops checking a file it cannot fully read; comparing against such a partial list of
# errors would blame the output for errors the input merely hid.
UNREADABLE = re.compile(r"read failed|Tags out of order|Seek failed")
# Known differences that are not regressions, with the reason.
ACCEPTED = {
    # The input references a placeholder UID "0", which dciodvfy does not follow; the output
    # carries its keyed replacement, which dciodvfy then looks up in the evidence sequences.
    ("pydicom/reportsi.dcm", "Referenced SOP Instance is not listed"),
    ("pydicom/reportsi_with_empty_number_tags.dcm", "Referenced SOP Instance is not listed"),
}


def _errors(tool: str, path: Path) -> tuple[set[str], bool]:
    done = subprocess.run([tool, str(path)], capture_output=True, check=False, timeout=60)
    text = (done.stdout + done.stderr).decode("latin-1")
    errors = set()
    for line in text.splitlines():
        if line.startswith("Error"):
            normal = re.sub(r" = <[^>]*>", " = <>", line)
            normal = re.sub(r"\[[0-9]+\]", "", normal)
            normal = re.sub(r"[0-9]+(\.[0-9]+){2,}", "UID", normal)
            normal = re.sub(r"- values are .*", "", normal)
            errors.add(normal.strip())
    return errors, bool(UNREADABLE.search(text))


def _new_errors(tool: str, source: Path, output: Path, rel: str) -> list[str]:
    before, unreadable = _errors(tool, source)
    if unreadable:
        return []
    after, _ = _errors(tool, output)
    return sorted(e for e in after - before if not any(rel == f and m in e for f, m in ACCEPTED))


def test_corpus_outputs_add_no_conformance_error(tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    files = require_shared(CORPUS / "files", "The real-world corpus")
    deid = Deidentifier(DeidConfig(project="CORPUS"), SECRET, None)
    checked, problems = 0, {}
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        rel = path.relative_to(files).as_posix()
        try:
            deidentify_file(deid, path, tmp_path / rel)
        except ScrubberError:
            continue
        new = _new_errors(tool, path, tmp_path / rel, rel)
        checked += 1
        if new:
            problems[rel] = new
    assert checked >= 380
    assert problems == {}


def test_synthetic_outputs_add_no_conformance_error(tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    deid = Deidentifier(DeidConfig(project="SYNTH"), SECRET, None)
    for rel, ds, _patient in iter_sample_instances(patients=2, seed=4):
        source = tmp_path / "in" / rel
        write_instance(ds, source)
        out = read_instance(source)
        deid.deidentify(out)
        write_instance(out, tmp_path / "out" / rel)
        before, unreadable = _errors(tool, source)
        if unreadable:  # dciodvfy cannot read deflated files
            continue
        assert before == set(), rel
        assert _new_errors(tool, source, tmp_path / "out" / rel, str(rel)) == []
