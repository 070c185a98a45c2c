"""Reading bad input and writing atomically."""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.dicom_io import looks_like_dicom, read_instance, write_instance
from scrubber.errors import InputError, NotDicomError, OutputError, UnreadableDicomError
from scrubber.samples import SamplePatient, build_image, build_instance
from tests.pixel_matrix import J2K_SKIP, KINDS, SYNTAXES, encodable, kind_id, syntax_id


def _write(ds: Dataset, path: Path) -> Path:
    write_instance(ds, path)
    return path


def test_text_and_empty_files_are_not_dicom(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("Patient John Doe, MRN 12345\n" * 10)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    for path in (text, empty, tmp_path):
        with pytest.raises(NotDicomError) as caught:
            read_instance(path)
        assert "John" not in str(caught.value)
    assert not looks_like_dicom(text)


def test_truncated_file_is_unreadable_with_a_typed_error(tmp_path: Path, instance: Dataset) -> None:
    path = _write(instance, tmp_path / "full.dcm")
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError):
        dataset = read_instance(cut)
        # pydicom may read a short file lazily; touching every element must then fail.
        for _elem in dataset.iterall():
            pass
        raise UnreadableDicomError("read succeeded on a truncated file")


def test_absurd_element_length_is_refused(tmp_path: Path, instance: Dataset) -> None:
    path = _write(instance, tmp_path / "ok.dcm")
    data = bytearray(path.read_bytes())
    # Explicit VR LE: find the Study Description (0008,1030) LO and give it a 2 GB length.
    marker = bytes.fromhex("08003010") + b"LO"
    at = data.index(marker)
    data[at + 4 : at + 6] = b"UT"
    data[at + 6 : at + 12] = b"\x00\x00" + (0x7FFFFFF0).to_bytes(4, "little")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    with pytest.raises(UnreadableDicomError, match="truncated") as caught:
        read_instance(bad)
    assert "(0008,1030)" in str(caught.value)
    assert "CT for" not in str(caught.value)


def test_headless_data_sets_are_read(tmp_path: Path, instance: Dataset) -> None:
    instance.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = tmp_path / "headless.dcm"
    pydicom.dcmwrite(path, instance, implicit_vr=True, little_endian=True)
    body = path.read_bytes()
    stripped = body[body.index(b"\x08\x00") :] if body[128:132] == b"DICM" else body
    assert stripped[128:132] != b"DICM"
    headless = tmp_path / "bare.dcm"
    headless.write_bytes(stripped)
    ds = read_instance(headless)
    assert ds.SOPInstanceUID == instance.SOPInstanceUID


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, instance: Dataset) -> None:
    target = tmp_path / "out" / "x.dcm"
    broken = Dataset()
    broken.file_meta = instance.file_meta
    broken.SOPClassUID = instance.SOPClassUID
    broken.SOPInstanceUID = instance.SOPInstanceUID
    broken.add_new(0x00280010, "US", "not a number")
    with pytest.raises(OutputError, match=r"(?i)nothing was"):
        write_instance(broken, target)
    assert list((tmp_path / "out").iterdir()) == []
    write_instance(instance, target)
    assert read_instance(target).SOPInstanceUID == instance.SOPInstanceUID
    assert [p.name for p in target.parent.iterdir()] == ["x.dcm"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_is_a_clear_error(tmp_path: Path, instance: Dataset) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permissions"):
            write_instance(instance, locked / "x.dcm")
    finally:
        locked.chmod(0o700)


def test_output_error_on_missing_parent_permissions_as_root(
    tmp_path: Path, patient: SamplePatient
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="Cannot create"):
        write_instance(build_instance(patient), blocker / "sub" / "x.dcm")


def test_a_stray_delimiter_at_data_set_level_is_dropped(tmp_path: Path, instance: Dataset) -> None:
    """A sequence delimiter left among the elements (real US exports) must not block writing."""
    path = _write(instance, tmp_path / "in.dcm")
    data = path.read_bytes()
    at = data.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data, little endian
    path.write_bytes(data[:at] + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00" + data[at:])
    ds = read_instance(path)
    assert not [t for t in ds.keys() if t.group == 0xFFFE]
    write_instance(ds, tmp_path / "out.dcm")
    assert pydicom.dcmread(tmp_path / "out.dcm").PixelData == instance.PixelData


def test_content_read_by_the_caller_parses_and_fails_as_the_file_would(
    tmp_path: Path, instance: Dataset
) -> None:
    """``read_instance(path, data=...)``: the same data set, the same typed refusals."""
    path = _write(instance, tmp_path / "full.dcm")
    data = path.read_bytes()
    from_file, from_memory = read_instance(path), read_instance(path, data=data)
    assert [e.tag for e in from_memory] == [e.tag for e in from_file]
    assert from_memory.PixelData == from_file.PixelData
    assert from_memory.filename == str(path)  # named as if read from the file
    instance.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    headless = tmp_path / "headless.dcm"
    pydicom.dcmwrite(headless, instance, implicit_vr=True, little_endian=True)
    body = headless.read_bytes()
    bare = body[body.index(b"\x08\x00") :]
    assert read_instance(headless, data=bare).SOPInstanceUID == instance.SOPInstanceUID
    with pytest.raises(NotDicomError):
        read_instance(tmp_path / "notes.txt", data=b"Patient John Doe, MRN 12345\n" * 10)
    with pytest.raises(InputError):
        dataset = read_instance(path, data=data[: len(data) // 3])
        for _elem in dataset.iterall():
            pass
        raise UnreadableDicomError("read succeeded on truncated content")


def test_a_batch_worker_reads_a_small_input_once_and_streams_a_large_one(
    tmp_path: Path, instance: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from scrubber.runner import batch

    path = _write(instance, tmp_path / "one.dcm")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    data, digest = batch._read_input(path)
    assert data == path.read_bytes() and digest == expected
    monkeypatch.setattr(batch, "_IN_MEMORY_BYTES", 1024)
    assert batch._read_input(path) == (None, expected)
    assert batch._read_input(tmp_path / "missing.dcm") == (None, None)


def _encoded(ds: Dataset, *, reference: bool) -> bytes:
    """What :func:`stage_instance` writes for ``ds``: with scrubber's writer or pydicom's own."""
    from pydicom.filewriter import write_dataset

    from scrubber.dicom_io import files

    fp = BytesIO()
    if reference:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(files, "write_body", write_dataset)
            files._encode(fp, ds)
    else:
        files._encode(fp, ds)
    return fp.getvalue()


def _twice(data: bytes) -> tuple[Dataset, Dataset]:
    return read_instance(Path("a.dcm"), data=data), read_instance(Path("b.dcm"), data=data)


@pytest.mark.parametrize("syntax", SYNTAXES, ids=syntax_id)
@pytest.mark.parametrize("kind", KINDS[:3], ids=kind_id)
def test_the_writer_gives_pydicoms_bytes_in_every_syntax(
    tmp_path: Path, syntax: str, kind: tuple[str, int, bool, int]
) -> None:
    photometric, bits, signed, planar = kind
    if not encodable(syntax, kind):
        pytest.skip(J2K_SKIP)
    ds, _ = build_image(
        photometric=photometric,
        bits_stored=bits,
        signed=signed,
        frames=2,
        planar_configuration=planar,
        transfer_syntax=syntax,
    )
    data = _write(ds, tmp_path / "in.dcm").read_bytes()
    ours, theirs = _twice(data)
    assert _encoded(ours, reference=False) == _encoded(theirs, reference=True)
    deid = Deidentifier(DeidConfig(project="WRITER"), b"k" * 32, None)
    ours, theirs = _twice(data)
    deid.deidentify(ours)
    deid.deidentify(theirs)
    assert _encoded(ours, reference=False) == _encoded(theirs, reference=True)


def test_the_writer_gives_pydicoms_bytes_for_edited_and_odd_elements(
    tmp_path: Path, instance: Dataset
) -> None:
    ds = instance
    ds.add_new(0x00091010, "LO", "private")  # odd length, padded when written
    ds.add_new(0x00091011, "UN", b"\x01" * 70_001)  # long UN value
    ds.add_new(0x00091012, "OB", b"\x02\x03\x04")
    item = Dataset()
    item.CodeValue = "X"
    ds.add_new(0x00400275, "SQ", [item])
    data = _write(ds, tmp_path / "in.dcm").read_bytes()
    for edit in (
        lambda d: None,
        lambda d: setattr(d, "PatientName", "EDITED^NAME"),
        lambda d: d.__delitem__(0x00091012),
        lambda d: d.add_new(0x00080000, "UL", 42),  # a retired group length: never written
        lambda d: d[0x00400275].value[0].__setattr__("CodeValue", "YY"),
    ):
        ours, theirs = _twice(data)
        edit(ours)
        edit(theirs)
        assert _encoded(ours, reference=False) == _encoded(theirs, reference=True)


def test_the_writer_copies_unread_elements_without_pydicoms_element_writer(
    tmp_path: Path, instance: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path is taken: only elements read (converted) since go through pydicom."""
    from pydicom.filewriter import write_data_element

    from scrubber.dicom_io import files

    data = _write(instance, tmp_path / "in.dcm").read_bytes()
    ours, _ = _twice(data)
    ours.PatientName = "READ^AND^CHANGED"
    written: list[int] = []
    real = write_data_element

    def counting(fp: object, elem: object, encodings: object = None) -> None:
        written.append(int(elem.tag))  # type: ignore[attr-defined]
        real(fp, elem, encodings)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "write_data_element", counting)
    files._encode(BytesIO(), ours)
    assert 0x00100010 in written  # the changed name
    assert 0x7FE00010 not in written  # the pixel data, copied as read
    assert len(written) < len(ours) // 2
