"""Mutated files end in a typed error or a clean output, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.dicom_io import read_instance, write_instance
from scrubber.errors import ScrubberError
from scrubber.samples import iter_sample_instances
from tests.conftest import SECRET

_SAMPLES: list[bytes] = []


def _sample_bytes() -> list[bytes]:
    if not _SAMPLES:
        with tempfile.TemporaryDirectory() as folder:
            for index, (_rel, ds, _patient) in enumerate(iter_sample_instances(1, seed=2)):
                path = Path(folder) / f"{index}.dcm"
                write_instance(ds, path)
                _SAMPLES.append(path.read_bytes())
    return _SAMPLES


mutation = st.tuples(
    st.integers(min_value=0, max_value=5),  # which sample
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=4000), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    st.one_of(st.none(), st.integers(min_value=140, max_value=20000)),  # truncation point
)


@settings(max_examples=200, deadline=None)
@given(mutation)
def test_mutated_files_never_crash(change: tuple[int, list[tuple[int, int]], int | None]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _check_mutation(Path(folder), change)


def _check_mutation(tmp_path: Path, change: tuple[int, list[tuple[int, int]], int | None]) -> None:
    which, flips, cut = change
    data = bytearray(_sample_bytes()[which])
    for offset, value in flips:
        if offset < len(data):
            data[offset] = value
    if cut is not None:
        data = data[:cut]
    source = tmp_path / "mutated.dcm"
    source.write_bytes(bytes(data))
    deid = Deidentifier(DeidConfig(project="FUZZ"), SECRET, None)
    try:
        ds = read_instance(source)
        deid.deidentify(ds)
        write_instance(ds, tmp_path / "out.dcm")
    except ScrubberError:
        assert not (tmp_path / "out.dcm").exists()
        return
    assert (tmp_path / "out.dcm").stat().st_size > 0


@pytest.mark.parametrize("size", [0, 1, 127, 132, 200])
def test_tiny_and_headerless_fragments(tmp_path: Path, size: int) -> None:
    source = tmp_path / "frag.dcm"
    source.write_bytes(_sample_bytes()[0][:size])
    with pytest.raises(ScrubberError):
        read_instance(source)


def test_unknown_vr_inside_a_kept_sequence_is_refused_not_copied(tmp_path: Path) -> None:
    """A nested element whose VR DICOM does not define is refused as unreadable.

    The reader checks the top level; inside a sequence the de-identifier meets it. Copied through
    raw (as it was), it made an output that the next reader fails on.
    """
    from io import BytesIO

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from scrubber.errors import UnreadableDicomError
    from scrubber.samples import build_instance, sample_patients

    ds = build_instance(sample_patients(1, seed=3)[0], modality="CT", series="vr")
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D3000", "SRT", "QQQQQQ"
    ds.AnatomicRegionSequence = Sequence([item])  # kept by the profile: its items are walked
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    at = data.find(b"LO\x06\x00QQQQQQ")
    assert at > 0
    source = tmp_path / "nested-bad-vr.dcm"
    source.write_bytes(data[:at] + b"ZZ" + data[at + 2 :])

    read = read_instance(source)  # the top level is sound
    with pytest.raises(UnreadableDicomError) as caught:
        Deidentifier(DeidConfig(project="FUZZ"), SECRET, None).deidentify(read)
    assert "QQQQQQ" not in str(caught.value)
    assert "sequence" in str(caught.value)


@pytest.mark.parametrize("name", ["damaged-value-in-sequence", "sequence-ends-early"])
def test_a_value_pydicom_cannot_convert_is_refused_as_unreadable(name: str) -> None:
    """Damage inside a sequence that pydicom trips on while converting (a struct error, an
    OSError at a short read) is the file's fault: refused as unreadable, quoting nothing."""
    from scrubber.errors import UnreadableDicomError

    path = Path(__file__).resolve().parent.parent / "fuzz" / "regressions" / f"{name}.dcm"
    read = read_instance(path)
    with pytest.raises(UnreadableDicomError, match=r"cannot be read as its VR") as caught:
        Deidentifier(DeidConfig(project="FUZZ"), SECRET, None).deidentify(read)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_bug_in_the_de_identifier_is_not_blamed_on_the_file(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An error raised by scrubber's own code is a DeidentificationError (held as an internal
    error and logged with where it happened), never an 'unreadable file'."""
    from scrubber.errors import DeidentificationError, UnreadableDicomError

    def broken(*_args: object, **_kwargs: object) -> str:
        raise TypeError("secret-value-XYZ")

    monkeypatch.setattr(Deidentifier, "_pseudonymise", broken)
    ds = next(iter(iter_sample_instances(1, seed=2)))[1]
    with pytest.raises(DeidentificationError) as caught:
        Deidentifier(DeidConfig(project="FUZZ"), SECRET, None).deidentify(ds)
    assert not isinstance(caught.value, UnreadableDicomError)
    assert "secret-value-XYZ" not in str(caught.value)
    assert "secret-value-XYZ" not in caplog.text
    assert "test_hostile_input.py" in caplog.text  # where it was raised


def _with_short_value(ds: object) -> int:
    """Put a raw Bits Stored (US) of 3 bytes into ``ds``; pydicom fails converting it."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(0x0028, 0x0101)
    ds._dict[tag] = RawDataElement(tag, "US", 3, b"\x01\x02\x03", 0, False, True)  # type: ignore[attr-defined]
    return int(tag)


def test_a_value_pydicom_fails_to_convert_is_recognised() -> None:
    from pydicom.dataset import Dataset

    from scrubber.errors import converting_a_value

    ds = Dataset()
    tag = _with_short_value(ds)
    with pytest.raises(Exception) as caught:
        ds[tag]
    assert converting_a_value(caught.value)
    try:
        raise ValueError("not pydicom")
    except ValueError as exc:
        assert not converting_a_value(exc)


def test_a_sequence_vr_over_bytes_without_items_is_recognised_as_the_files_fault() -> None:
    """pydicom converts such a value, then fails storing it back as a Sequence (a TypeError
    outside its conversion function): still a damaged value, not a bug of scrubber's."""
    from scrubber.errors import converting_a_value

    path = Path(__file__).resolve().parent.parent / "fuzz" / "regressions"
    ds = read_instance(path / "sequence-kept-as-bytes.dcm")
    with pytest.raises(TypeError) as caught:
        ds[0x00080023]  # Content Date, stored with VR SQ over bytes that hold no items
    assert converting_a_value(caught.value)
    from pydicom.dataset import Dataset

    with pytest.raises(TypeError) as ours:
        Dataset().ContentSequence = ["not a data set"]  # a Sequence made wrongly by a caller
    assert not converting_a_value(ours.value)


def test_a_damaged_value_met_anywhere_in_the_pipeline_is_unreadable_not_internal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wherever scrubber first reads a value pydicom cannot convert, the instance is held as
    unreadable (the file's fault), not internal_error (a bug)."""
    import scrubber.pipeline.instance as pipeline
    from scrubber.pipeline.outcome import QuarantineReason

    ds = next(iter(iter_sample_instances(1, seed=2)))[1]
    tag = _with_short_value(ds)
    from scrubber.deid.terms import capture_terms as real

    def reading(data: object) -> object:
        data[tag]  # type: ignore[index]  # the first use of the damaged value
        return real(data)  # type: ignore[arg-type]

    monkeypatch.setattr("scrubber.pipeline.instance.capture_terms", reading)

    class NoText:
        name, max_side = "none", 4096

        def read(self, view: object) -> list[object]:
            return []

    from scrubber.detect import load_classifier

    result = pipeline.scrub_instance(
        ds,
        classifier=load_classifier(threads=1),
        engine=NoText(),  # type: ignore[arg-type]
        deidentifier=Deidentifier(DeidConfig(project="FUZZ"), SECRET, None),
    )
    assert result.reason is QuarantineReason.UNREADABLE, result.message
    assert "cannot be read as its VR" in (result.message or "")
    assert result.dataset is None
