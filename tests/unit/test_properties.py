"""Properties of the de-identifier and of pixel decoding over generated input (hypothesis).

De-identification: whatever strings sit in the elements the profile does not keep (names, IDs,
addresses, free text, private elements, the items of nested sequences of any depth), none of them
is left anywhere in the written output; UIDs map the same way in every file of a project (and
references between files stay linked); dates move by one project-wide shift.

Pixels: whatever the Image Pixel module says about the data (absurd sizes, bit depths that do not
match the data's length, frame counts that do not match, encapsulated fragments cut short, basic
offset tables that point nowhere), decoding ends in frames of the described shape or a typed
:class:`~scrubber.errors.ScrubberError`, and the pipeline ends in an outcome with a named reason,
never an exception and never the catch-all ``internal_error``.

Each test draws a modest, derandomized number of examples (see ``@settings``) so the file runs in
well under a minute on two cores.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, RLELossless

from scrubber.deid import DEFAULT_OPTIONS, Action, DeidConfig, Deidentifier, Profile
from scrubber.deid.dates import shift_days_from_secret
from scrubber.deid.profile_table import PROFILE_TABLE
from scrubber.deid.terms import IDENTIFYING_KEYWORDS
from scrubber.dicom_io import pixels as pixels_module
from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.pixels import (
    FrameTooLargeError,
    PixelDescription,
    UnsupportedPixelsError,
    describe_pixels,
    iter_frames,
    max_frame_bytes,
)
from scrubber.errors import ConfigError, DeidentificationError, ScrubberError
from scrubber.pipeline import Outcome, QuarantineReason, scrub_instance
from scrubber.pipeline import instance as pipeline_module
from scrubber.samples import build_image
from tests.conftest import SECRET

PROPERTY: Final = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------
# helpers


def _put(ds: Dataset, tag: int, vr: str, value: object) -> None:
    """Set an element without pydicom's value validation (hostile values are the point)."""
    ds[tag] = DataElement(Tag(tag), vr, value, validation_mode=pydicom_config.IGNORE)


def _roundtrip_file(ds: Dataset, folder: Path, name: str) -> Path:
    """Write ``ds`` as a real input file (values read back raw, as a run reads them)."""
    path = folder / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return path


def _deidentified_bytes(path: Path, deid: Deidentifier, folder: Path) -> bytes:
    ds = read_instance(path)
    deid.deidentify(ds)
    out = folder / f"{path.stem}.out.dcm"
    write_instance(ds, out)
    return out.read_bytes()


def _base(seed: int = 0) -> Dataset:
    ds, _ = build_image(bits_stored=8, rows=8, columns=8, seed=seed)
    return ds


def _text_targets() -> dict[str, list[tuple[int, str]]]:
    """Text-valued attributes the default profile does not keep, by what it does to them."""
    profile = Profile(DEFAULT_OPTIONS)
    found: dict[str, list[tuple[int, str]]] = {"X": [], "Z": [], "D": []}
    for tag_text, _name, _basic, _options in PROFILE_TABLE:
        try:
            number = int(tag_text, 16)
            vr = dictionary_VR(number)
        except (KeyError, ValueError):
            continue  # repeating groups, private placeholders
        action = profile.action(number)
        if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and action in (
            Action.REMOVE,
            Action.EMPTY,
            Action.DUMMY,
        ):
            found[action.value].append((number, vr))
    return found


TEXT_TARGETS: Final = _text_targets()
ALL_TEXT_TARGETS: Final = sorted(t for targets in TEXT_TARGETS.values() for t in targets)
IDENTIFYING: Final = sorted(
    (n, dictionary_VR(n))
    for n in (int(tag_for_keyword(k) or 0) for k in IDENTIFYING_KEYWORDS)
    if n and dictionary_VR(n) in ("PN", "LO", "SH", "LT", "ST", "UT", "UC")
)

#: Sequences a canary may hide in: removed (X), dummied (D), kept with UIDs remapped (U), one the
#: profile does not list (walked), and a private one.
CONTAINERS: Final = (
    "OtherPatientIDsSequence",
    "ContentSequence",
    "ReferencedImageSequence",
    "ProcedureCodeSequence",
    "private",
)

# printable ASCII without the multi-value separator
NOISE: Final = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="\\"),
    max_size=10,
)


class Canaries:
    """Unique strings nothing else produces (``QZV`` never occurs in UIDs, hex or pseudonyms)."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def next(self) -> str:
        value = f"QZV{len(self.issued):03d}Q"
        self.issued.append(value)
        return value

    def leaks(self, data: bytes) -> list[str]:
        return [c for c in self.issued if c.encode() in data]


def _fill(item: Dataset, canaries: Canaries, noise: str, *, person: bool = True) -> None:
    if person:
        _put(item, 0x00100010, "PN", f"{canaries.next()}^{canaries.next()}")
    _put(item, 0x00080080, "LO", f"{noise[:4]} {canaries.next()}")  # Institution Name (X)
    _put(item, 0x00081155, "UI", "1.2.3.4.5")  # Referenced SOP Instance UID


def _container(parent: Dataset, kind: str, index: int) -> Dataset:
    """Add a one-item sequence of ``kind`` to ``parent``; return the item."""
    item = Dataset()
    if kind == "private":
        block = parent.private_block(0x0029 + 2 * (index % 4), f"QZV CREATOR {index}", create=True)
        block.add_new(0x10, "SQ", Sequence([item]))
    else:
        number = int(tag_for_keyword(kind) or 0)
        parent[number] = DataElement(Tag(number), "SQ", Sequence([item]))
    return item


# ---------------------------------------------------------------------------------------------
# de-identification: no canary survives


@st.composite
def hostile_headers(draw: st.DrawFn) -> tuple[list[tuple[int, str, str]], list[str], int, str]:
    targets = draw(
        st.lists(st.sampled_from(ALL_TEXT_TARGETS), min_size=1, max_size=12, unique=True)
    )
    noises = draw(st.lists(NOISE, min_size=len(targets), max_size=len(targets)))
    chain = draw(st.lists(st.sampled_from(CONTAINERS), min_size=0, max_size=6))
    depth_extra = draw(st.sampled_from([0, 0, 0, 40]))  # now and then deeper than max_depth
    free_text = draw(NOISE)
    return (
        [(n, vr, noise) for (n, vr), noise in zip(targets, noises, strict=True)],
        chain,
        depth_extra,
        free_text,
    )


@PROPERTY
@given(hostile_headers())
def test_no_header_canary_survives_de_identification(
    case: tuple[list[tuple[int, str, str]], list[str], int, str],
) -> None:
    targets, chain, depth_extra, free_text = case
    canaries = Canaries()
    ds = _base()
    for number, vr, noise in targets:  # any string in an attribute the profile does not keep
        value = f"{noise} {canaries.next()}" if vr not in ("PN",) else f"{canaries.next()}^{noise}"
        _put(ds, number, vr, value)
    for number, vr in IDENTIFYING:  # identifying values: header terms for the cleaners
        if number not in {t[0] for t in targets}:
            _put(ds, number, vr, canaries.next())
    # a private block (creator and values)
    block = ds.private_block(0x0011, f"ACME {canaries.next()}", create=True)
    block.add_new(0x01, "LO", canaries.next())
    block.add_new(0x02, "UT", f"{free_text} {canaries.next()}")
    # nested sequences, one item per level, canaries at every level
    item = ds
    levels = chain + ["ProcedureCodeSequence"] * depth_extra
    for index, kind in enumerate(levels):
        item = _container(item, kind, index)
        _fill(item, canaries, free_text)
    with tempfile.TemporaryDirectory() as folder:
        source = _roundtrip_file(ds, Path(folder), "in.dcm")
        deid = Deidentifier(DeidConfig(project="PROP"), SECRET, None)
        try:
            data = _deidentified_bytes(source, deid, Path(folder))
        except DeidentificationError:
            assert len(levels) > deid.config.max_depth  # refused only when nested too deep
            return
    assert canaries.leaks(data) == []


@PROPERTY
@given(
    st.lists(NOISE, min_size=1, max_size=4),
    st.sampled_from(["ContentSequence", "GraphicAnnotationSequence"]),
)
def test_header_values_quoted_in_kept_free_text_are_masked(noises: list[str], kind: str) -> None:
    """Free text the profile keeps in dummied (D) or cleaned (C) sequences (structured content,
    graphic annotations) never carries a value the header identifies the patient by, wherever in
    the text it is quoted. (Coded concepts, such as Code Meaning, are kept as they are.)"""
    canaries = Canaries()
    ds = _base()
    name, ident = canaries.next(), canaries.next()
    _put(ds, 0x00100010, "PN", f"{name}^{canaries.next()}")
    _put(ds, 0x00100020, "LO", ident)
    item = _container(ds, kind, 0)
    sentence = " ".join(f"{n} {v}," for n, v in zip(noises, [name, ident] * 2, strict=False))
    _put(item, 0x00700006, "ST", sentence)  # Unformatted Text Value
    _put(item, 0x0040A160, "UT", sentence)  # Text Value
    with tempfile.TemporaryDirectory() as folder:
        source = _roundtrip_file(ds, Path(folder), "in.dcm")
        data = _deidentified_bytes(
            source, Deidentifier(DeidConfig(project="PROP"), SECRET, None), Path(folder)
        )
    assert canaries.leaks(data) == []


# ---------------------------------------------------------------------------------------------
# UIDs: one mapping per project, references kept linked

UID_TEXT: Final = st.lists(
    st.integers(min_value=0, max_value=10**9).map(str), min_size=2, max_size=8
).map(lambda parts: "1.3.6.1.4.1." + ".".join(parts))
UID_KEYWORDS: Final = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)


def _uids_of(ds: Dataset) -> dict[str, str]:
    return {k: str(ds.get(k, "")) for k in UID_KEYWORDS}


@PROPERTY
@given(st.lists(UID_TEXT, min_size=5, max_size=5, unique=True))
def test_uids_map_consistently_within_a_project(uids: list[str]) -> None:
    study, series, sop_a, sop_b, frame = uids
    first, second = _base(1), _base(2)
    for ds, sop in ((first, sop_a), (second, sop_b)):
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.FrameOfReferenceUID = frame
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    reference = Dataset()  # the second instance names the first (Source Image Sequence)
    reference.ReferencedSOPClassUID = first.SOPClassUID
    reference.ReferencedSOPInstanceUID = sop_a
    second.SourceImageSequence = Sequence([reference])
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        paths = [_roundtrip_file(ds, folder, f"{i}.dcm") for i, ds in enumerate((first, second))]
        outputs = []
        for index, path in enumerate(paths):  # two de-identifiers: two processes of one project
            deid = Deidentifier(DeidConfig(project="PROP"), SECRET, None)
            out = folder / f"{index}.out.dcm"
            ds = read_instance(path)
            deid.deidentify(ds)
            write_instance(ds, out)
            outputs.append(pydicom.dcmread(out))
        other = read_instance(paths[0])
        Deidentifier(DeidConfig(project="OTHER"), b"another-secret-0123456789", None).deidentify(
            other
        )
        raw = b"".join(p.read_bytes() for p in folder.glob("*.out.dcm"))
    a, b = (_uids_of(o) for o in outputs)
    assert a["StudyInstanceUID"] == b["StudyInstanceUID"]
    assert a["SeriesInstanceUID"] == b["SeriesInstanceUID"]
    assert a["FrameOfReferenceUID"] == b["FrameOfReferenceUID"]
    assert a["SOPInstanceUID"] != b["SOPInstanceUID"]
    assert outputs[1].SourceImageSequence[0].ReferencedSOPInstanceUID == a["SOPInstanceUID"]
    assert outputs[0].file_meta.MediaStorageSOPInstanceUID == a["SOPInstanceUID"]
    assert len(set(a.values())) == 4  # distinct originals stay distinct
    for value in (*a.values(), *b.values()):
        assert value.startswith("2.25.") and len(value) <= 64 and value not in uids
    assert not [u for u in uids if u.encode() in raw]
    assert _uids_of(other)["StudyInstanceUID"] != a["StudyInstanceUID"]  # another project


# ---------------------------------------------------------------------------------------------
# dates: one shift for the whole project

DATES: Final = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31))
DATE_KEYWORDS: Final = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


@PROPERTY
@given(st.lists(DATES, min_size=8, max_size=8), st.integers(0, 235959).map(lambda t: f"{t:06d}"))
def test_dates_shift_by_one_constant_across_a_project(
    dates: list[dt.date], time_of_day: str
) -> None:
    assume(int(time_of_day[2:4]) < 60 and int(time_of_day[4:]) < 60)
    shift = dt.timedelta(days=shift_days_from_secret(SECRET))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        shifted: list[tuple[dt.date, str]] = []
        for index, chunk in enumerate((dates[:4], dates[4:])):
            ds = _base(index)
            ds.PatientID = f"PATIENT{index}"  # two patients, one project
            for keyword, day in zip(DATE_KEYWORDS, chunk, strict=True):
                setattr(ds, keyword, day.strftime("%Y%m%d"))
            ds.AcquisitionDateTime = chunk[0].strftime("%Y%m%d") + time_of_day + "+0100"
            deid = Deidentifier(DeidConfig(project="PROP"), SECRET, None)
            path = _roundtrip_file(ds, folder, f"{index}.dcm")
            out = folder / f"{index}.out.dcm"
            result = read_instance(path)
            deid.deidentify(result)
            write_instance(result, out)
            written = pydicom.dcmread(out)
            for keyword, day in zip(DATE_KEYWORDS, chunk, strict=True):
                shifted.append((day, str(written.get(keyword, ""))))
            value = str(written.AcquisitionDateTime)
            assert value[8:] == time_of_day + "+0100"  # the time of day and offset stay
            shifted.append((chunk[0], value[:8]))
    for original, value in shifted:
        assert value, "a shifted date went missing"
        moved = dt.datetime.strptime(value, "%Y%m%d").date()
        assert moved - original == shift
    assert shift != dt.timedelta(0)


@PROPERTY
@given(
    st.sampled_from(["StudyDate", "PatientBirthDate", "AcquisitionDateTime", "ContentDate"]),
    st.text(alphabet="0123456789.-+ QZVabc:/", min_size=1, max_size=26),
)
def test_any_text_in_a_date_is_shifted_or_dropped_never_kept(keyword: str, text: str) -> None:
    value = text.strip(" ")
    assume(value)
    ds = _base()
    number = int(tag_for_keyword(keyword) or 0)
    _put(ds, number, dictionary_VR(number), value)
    with tempfile.TemporaryDirectory() as name:
        path = _roundtrip_file(ds, Path(name), "in.dcm")
        out = Path(name) / "out.dcm"
        result = read_instance(path)
        Deidentifier(DeidConfig(project="PROP"), SECRET, None).deidentify(result)
        write_instance(result, out)
        written = pydicom.dcmread(out)
    kept = str(written.get(keyword, "") or "")
    assert kept.strip() != value or not any(c.isdigit() for c in value)
    assert "QZV" not in kept


# ---------------------------------------------------------------------------------------------
# pixels: inconsistent descriptions end in typed errors or a named quarantine


class _NoText:
    """OCR stand-in that finds nothing (the pixels, not the reading, are under test)."""

    name = "none"
    max_side = 4096

    def read(self, view: np.ndarray) -> list[Any]:
        assert view.dtype == np.uint8
        return []


class _Classifier:
    """What the pipeline needs of a classifier beyond :func:`score_instance` (scores pinned)."""

    class thresholds:  # noqa: N801 - an attribute namespace, as the real one
        low = 0.5
        high = 0.99


def _pinned_scores(
    _classifier: object, ds: Dataset, description: PixelDescription | None = None
) -> np.ndarray:
    """Decode and render every frame as the real scorer does, then score each 0.6 (OCR runs)."""
    from scrubber.render import render_frame

    description = description or describe_pixels(ds)
    views = [render_frame(f, ds, description) for f in iter_frames(ds)]
    return np.full(len(views), 0.6, np.float32)


def _rle(ds: Dataset) -> Dataset:
    """The same image, RLE Lossless encoded (one fragment per frame)."""
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return ds


PIXEL_MUTATIONS: Final = st.fixed_dictionaries(
    {},
    optional={
        "Rows": st.sampled_from([0, 1, 7, 9, 65535, 30000]),
        "Columns": st.sampled_from([0, 1, 7, 9, 65535, 30000]),
        "BitsAllocated": st.sampled_from([0, 1, 8, 12, 16, 32, 64]),
        "BitsStored": st.sampled_from([0, 1, 8, 12, 16, 17, 64]),
        "HighBit": st.sampled_from([0, 7, 11, 15, 63]),
        "SamplesPerPixel": st.sampled_from([0, 1, 2, 3, 4]),
        "PhotometricInterpretation": st.sampled_from(
            ["MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL_422", "HSV", ""]
        ),
        "NumberOfFrames": st.sampled_from(["0", "1", "2", "3", "1000000000", "-1", "x"]),
        "PixelRepresentation": st.sampled_from([0, 1, 7]),
        "PlanarConfiguration": st.sampled_from([0, 1, 5]),
        "cut": st.integers(min_value=0, max_value=200),
        "extend": st.integers(min_value=1, max_value=64),
        "drop_pixels": st.booleans(),
    },
)


def _mutate(ds: Dataset, change: dict[str, Any]) -> None:
    for keyword, value in change.items():
        if keyword in ("cut", "extend", "drop_pixels"):
            continue
        number = int(tag_for_keyword(keyword) or 0)
        _put(ds, number, dictionary_VR(number), value)
    if "PixelData" not in ds:
        return
    data = bytes(ds.PixelData)
    if change.get("drop_pixels"):
        del ds.PixelData
        return
    if "cut" in change:
        data = data[: max(0, len(data) - change["cut"])]
    if "extend" in change:
        data += b"\x5a" * change["extend"]
    ds.PixelData = data + b"\x00" * (len(data) % 2)


DAMAGES: Final = ("cut", "drop", "extra", "offsets", "offsets_far", "empty", "noise")


@st.composite
def encapsulated_damage(draw: st.DrawFn) -> tuple[str, int]:
    """RLE fragments of a two-frame image, cut, dropped, duplicated, with a bad offset table."""
    code = draw(st.sampled_from(list(DAMAGES)))
    return code, draw(st.integers(min_value=0, max_value=400))


def _item(data: bytes) -> bytes:
    return b"\xfe\xff\x00\xe0" + len(data).to_bytes(4, "little") + data


def _encapsulate(fragments: list[bytes], offsets: list[int]) -> bytes:
    """Encapsulated Pixel Data by hand (pydicom's helper refuses the damage under test)."""
    table = b"".join(o.to_bytes(4, "little") for o in offsets)
    body = b"".join(_item(f) for f in fragments)
    return _item(table) + body + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _damaged_rle(code: str, cut: int) -> Dataset:
    ds, _ = build_image(bits_stored=8, rows=16, columns=24, frames=2)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    fragments = [
        frame for frame in pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=2)
    ]
    if code == "cut":  # the second frame's fragment cut short
        fragments[1] = fragments[1][: max(0, len(fragments[1]) - cut)]
    elif code == "drop":  # a frame's fragment missing
        fragments = fragments[:1]
    elif code == "extra":  # one more fragment than frames
        fragments = [*fragments, fragments[0]]
    elif code == "noise":  # a fragment of noise
        fragments[0] = bytes((i * 37 + cut) % 256 for i in range(64 + cut))
    elif code == "empty":
        fragments[0] = b""
    fragments = [f + b"\x00" * (len(f) % 2) for f in fragments]
    offsets = [sum(8 + len(f) for f in fragments[:i]) for i in range(len(fragments))]
    if code.startswith("offsets"):  # the second frame's offset points elsewhere, or past the end
        offsets[-1] = 0x7FFFFFF0 if code == "offsets_far" else cut * 2
    ds.PixelData = _encapsulate(fragments, offsets)
    return ds


def _decode_all(ds: Dataset) -> list[np.ndarray]:
    return list(iter_frames(ds))


def _check_decoding(ds: Dataset) -> None:
    """Decoding yields frames of the described shape, or raises a typed error."""
    try:
        description = describe_pixels(ds)
        frames = _decode_all(ds)
    except ScrubberError:
        return
    assert len(frames) == description.frames
    for frame in frames:
        assert frame.shape[:2] == (description.rows, description.columns)


def _check_pipeline(ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "score_instance", _pinned_scores)
    result = scrub_instance(
        ds,
        classifier=_Classifier(),  # type: ignore[arg-type]
        engine=_NoText(),
        deidentifier=Deidentifier(DeidConfig(project="PROP"), SECRET, None),
    )
    if result.outcome is Outcome.QUARANTINED:
        assert result.reason is not None
        assert result.reason is not QuarantineReason.INTERNAL_ERROR, result.message
        assert result.dataset is None
    else:
        assert result.dataset is not None


@settings(PROPERTY, max_examples=80)
@given(PIXEL_MUTATIONS, st.booleans(), st.booleans())
def test_inconsistent_pixel_modules_end_in_typed_errors(
    change: dict[str, Any], multiframe: bool, encapsulated: bool
) -> None:
    ds, _ = build_image(bits_stored=8, rows=16, columns=24, frames=2 if multiframe else 1)
    if encapsulated:
        _rle(ds)
    _mutate(ds, change)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _check_decoding(ds)
        _check_pipeline(ds, monkeypatch)


@settings(PROPERTY, max_examples=50)
@given(encapsulated_damage())
def test_damaged_encapsulated_fragments_end_in_typed_errors(damage: tuple[str, int]) -> None:
    ds = _damaged_rle(*damage)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _check_decoding(ds)
        _check_pipeline(ds, monkeypatch)


def test_mutated_pixel_files_written_and_read_back_end_in_typed_errors(tmp_path: Path) -> None:
    """The same through a file: what a run reads is raw elements, not values set in memory."""
    ds, _ = build_image(bits_stored=12, rows=16, columns=24, frames=3)
    _put(ds, 0x00280008, "IS", "7")  # more frames than the data holds
    path = _roundtrip_file(ds, tmp_path, "frames.dcm")
    with pytest.raises(ScrubberError):
        _decode_all(read_instance(path))


# ---------------------------------------------------------------------------------------------
# the decoded frame size limit


def test_frames_larger_than_the_limit_are_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds, _ = build_image(bits_stored=16, rows=64, columns=80)
    assert describe_pixels(ds).frame_bytes == 64 * 80 * 2
    monkeypatch.setenv("SCRUBBER_MAX_FRAME_BYTES", str(64 * 80 * 2 - 1))
    assert max_frame_bytes() == 64 * 80 * 2 - 1
    decoded: list[object] = []
    monkeypatch.setattr("pydicom.pixels.utils.iter_pixels", lambda *a, **k: decoded.append(a))
    with pytest.raises(FrameTooLargeError) as refused:
        next(iter_frames(ds))
    assert decoded == []  # refused before any decoder ran
    assert isinstance(refused.value, UnsupportedPixelsError)
    assert "SCRUBBER_MAX_FRAME_BYTES" in str(refused.value)
    monkeypatch.setenv("SCRUBBER_MAX_FRAME_BYTES", str(64 * 80 * 2))
    assert describe_pixels(ds).frame_bytes == 64 * 80 * 2  # at the limit: accepted


def test_the_default_frame_limit_refuses_absurd_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRUBBER_MAX_FRAME_BYTES", raising=False)
    assert max_frame_bytes() == pixels_module.MAX_FRAME_BYTES
    ds, _ = build_image(bits_stored=16, rows=16, columns=16)
    ds.Rows = ds.Columns = 65535  # 8 GiB a frame, 512 bytes of data
    with pytest.raises(FrameTooLargeError):
        describe_pixels(ds)


def test_an_oversized_frame_is_quarantined_as_unsupported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRUBBER_MAX_FRAME_BYTES", "1024")
    ds, _ = build_image(bits_stored=8, rows=64, columns=80)
    monkeypatch.setattr(pipeline_module, "score_instance", _pinned_scores)
    result = scrub_instance(
        ds,
        classifier=_Classifier(),  # type: ignore[arg-type]
        engine=_NoText(),
        deidentifier=Deidentifier(DeidConfig(project="PROP"), SECRET, None),
    )
    assert result.outcome is Outcome.QUARANTINED
    assert result.reason is QuarantineReason.UNSUPPORTED_ENCODING


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1e9"])
def test_a_bad_frame_limit_setting_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SCRUBBER_MAX_FRAME_BYTES", value)
    with pytest.raises(ConfigError, match="SCRUBBER_MAX_FRAME_BYTES"):
        max_frame_bytes()
