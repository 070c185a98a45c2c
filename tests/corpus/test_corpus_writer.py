"""scrubber's writer gives pydicom's bytes for every real-world file it reads (../shared/corpus)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom.filewriter import write_dataset

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.dicom_io import files, read_instance
from scrubber.errors import ScrubberError
from tests.conftest import CORPUS, SECRET, require_shared


def _encoded(data: bytes, deid: Deidentifier | None, *, reference: bool) -> bytes | None:
    try:
        ds = read_instance(Path("corpus.dcm"), data=data)
        if deid is not None:
            deid.deidentify(ds)
    except ScrubberError:
        return None  # refused before writing: nothing to compare
    fp = BytesIO()
    with pytest.MonkeyPatch.context() as patch:
        if reference:
            patch.setattr(files, "write_body", write_dataset)
        try:
            files._encode(fp, ds)
        except Exception as exc:  # both writers must fail alike
            return type(exc).__name__.encode()
    return fp.getvalue()


def test_every_corpus_file_encodes_to_pydicoms_bytes() -> None:
    root = require_shared(CORPUS / "files", "The real-world corpus")
    deid = Deidentifier(DeidConfig(project="CORPUS"), SECRET, None)
    compared, differ = 0, []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for step in (None, deid):  # as read, and de-identified (raw and converted elements)
            ours = _encoded(data, step, reference=False)
            theirs = _encoded(data, step, reference=True)
            if ours is None or theirs is None:
                continue
            compared += 1
            if ours != theirs:
                differ.append(f"{path.relative_to(root)} ({'deid' if step else 'as read'})")
    assert compared > 500, f"only {compared} encodings compared: is the corpus complete?"
    assert not differ, f"{len(differ)} file(s) encode differently from pydicom: {differ[:10]}"
