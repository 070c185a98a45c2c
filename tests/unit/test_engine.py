"""Behaviour of the metadata de-identifier on synthetic instances."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from scrubber.deid import (
    DateShiftScope,
    DeidConfig,
    Deidentifier,
    DirectoryFileError,
    KeyStore,
    PrivateTagSpec,
    ProfileOption,
    UnsupportedContentError,
)
from scrubber.deid.dates import shift_days_from_secret
from scrubber.deid.uids import UIDRemapper
from scrubber.dicom_io import read_instance, write_instance
from scrubber.errors import ConfigError, DeidentificationError
from scrubber.samples import SamplePatient, build_instance, iter_sample_instances, sample_patients
from tests.conftest import SECRET
from tests.phi_scan import leaks


def _roundtrip(ds: Dataset, tmp_path: Path, name: str = "in.dcm") -> Dataset:
    path = tmp_path / name
    write_instance(ds, path)
    return read_instance(path)


def _date(value: str) -> dt.date:
    return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))


@pytest.mark.parametrize(
    ("rel", "original", "patient"),
    list(iter_sample_instances(patients=3, seed=3)),
    ids=lambda v: str(v) if isinstance(v, Path) else "",
)
def test_no_identifying_value_survives_and_pixels_are_byte_identical(
    rel: Path, original: Dataset, patient: SamplePatient, tmp_path: Path, store: KeyStore
) -> None:
    source = tmp_path / "in.dcm"
    write_instance(original, source)
    ds = read_instance(source)
    pixels_before = ds.PixelData
    syntax = ds.file_meta.TransferSyntaxUID
    Deidentifier(DeidConfig(project="TEST"), SECRET, store).deidentify(ds)
    write_instance(ds, tmp_path / "out.dcm")

    assert leaks(read_instance(source), tmp_path / "out.dcm") == []
    raw = (tmp_path / "out.dcm").read_bytes()
    for value in patient.identifying_values():
        assert value.encode("utf-8") not in raw
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.PixelData == pixels_before
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.PatientIdentityRemoved == "YES"


def test_pseudonyms_follow_the_patient_within_and_across_runs(tmp_path: Path) -> None:
    first, second = sample_patients(2, seed=5)
    key = tmp_path / "key.sqlite"
    with KeyStore(key, "ILIAC_CT") as store:
        deid = Deidentifier(DeidConfig(project="ILIAC_CT"), SECRET, store)
        names = [
            str(deid.deidentify(build_instance(p, instance_number=n)).dataset.PatientName)
            for p, n in ((first, 1), (second, 1), (first, 2))
        ]
    assert names == ["ILIAC_CT_001", "ILIAC_CT_002", "ILIAC_CT_001"]
    with KeyStore(key, "ILIAC_CT") as store:
        deid = Deidentifier(DeidConfig(project="ILIAC_CT"), SECRET, store)
        ds = deid.deidentify(build_instance(second)).dataset
        assert ds.PatientName == ds.PatientID == "ILIAC_CT_002"
        exported = io.StringIO()
        store.export_csv("patient_id", exported)
    rows = exported.getvalue().splitlines()
    assert rows[0] == "id_old,id_new"
    assert f"{first.patient_id},ILIAC_CT_001" in rows
    assert f"{second.patient_id},ILIAC_CT_002" in rows


def test_uids_are_remapped_consistently_in_references(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    a = build_instance(patient, instance_number=1)
    b = build_instance(patient, instance_number=2)
    referenced = str(a.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
    originals = (str(a.StudyInstanceUID), str(a.SeriesInstanceUID), str(a.FrameOfReferenceUID))
    deidentifier.deidentify(a)
    deidentifier.deidentify(b)
    remap = UIDRemapper(SECRET)
    assert a.StudyInstanceUID == b.StudyInstanceUID == remap(originals[0])
    assert a.SeriesInstanceUID == b.SeriesInstanceUID == remap(originals[1])
    assert a.FrameOfReferenceUID == remap(originals[2])
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.ReferencedImageSequence[0].ReferencedSOPInstanceUID == remap(referenced)
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # class UIDs are kept
    assert a.ReferencedImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_a_different_secret_gives_different_uids(patient: SamplePatient) -> None:
    config = DeidConfig(project="TEST")
    a = Deidentifier(config, SECRET, None).deidentify(build_instance(patient)).dataset
    b = Deidentifier(config, SECRET[::-1], None).deidentify(build_instance(patient)).dataset
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.AccessionNumber != b.AccessionNumber


def test_dates_move_by_one_project_shift_and_birth_date_goes(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient)
    deidentifier.deidentify(ds)
    shift = dt.timedelta(days=shift_days_from_secret(SECRET))
    assert _date(ds.StudyDate) == _date(patient.study_date) + shift
    assert _date(ds.ContentDate) == _date(patient.study_date) + shift
    assert ds.StudyTime == "101500.250000"  # whole-day shifts keep the time of day
    assert ds["PatientBirthDate"].is_empty
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_per_patient_shift_differs_between_patients() -> None:
    first, second = sample_patients(2, seed=11)
    second.study_date = first.study_date
    config = DeidConfig(project="TEST", date_shift_scope=DateShiftScope.PATIENT)
    deid = Deidentifier(config, SECRET, None)
    a = deid.deidentify(build_instance(first)).dataset
    b = deid.deidentify(build_instance(second)).dataset
    c = deid.deidentify(build_instance(first, instance_number=2)).dataset
    assert a.StudyDate == c.StudyDate
    assert a.StudyDate != b.StudyDate


def test_basic_profile_without_options_empties_dates(patient: SamplePatient) -> None:
    ds = build_instance(patient)
    Deidentifier(DeidConfig(project="TEST", options=frozenset()), SECRET, None).deidentify(ds)
    assert ds["StudyDate"].is_empty
    assert "SeriesDate" not in ds  # X/D, Type 3: removed
    assert ds.ContentDate == "19000101"  # Z/D, needs a value in enhanced IODs
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert "SeriesDescription" not in ds


def test_options_keep_what_they_promise(patient: SamplePatient) -> None:
    options = frozenset(
        {
            ProfileOption.RETAIN_LONG_FULL_DATES,
            ProfileOption.RETAIN_PATIENT_CHARS,
            ProfileOption.RETAIN_DEVICE_ID,
            ProfileOption.RETAIN_INSTITUTION_ID,
            ProfileOption.RETAIN_UIDS,
        }
    )
    ds = build_instance(patient)
    original_uid = str(ds.SOPInstanceUID)
    Deidentifier(DeidConfig(project="TEST", options=options), SECRET, None).deidentify(ds)
    assert ds.StudyDate == patient.study_date
    assert ds.PatientSex == patient.sex and ds.PatientAge == "042Y"
    assert ds.StationName == "SYNTH-CT-01" and ds.DeviceSerialNumber == "SN-4711"
    assert ds.InstitutionName == patient.institution
    assert ds.SOPInstanceUID == original_uid
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113106", "113108", "113109", "113110", "113112"}


def test_clean_descriptors_masks_header_terms_and_keeps_the_rest(
    patient: SamplePatient,
) -> None:
    options = frozenset({ProfileOption.CLEAN_DESCRIPTORS})
    ds = build_instance(patient)
    Deidentifier(DeidConfig(project="TEST", options=options), SECRET, None).deidentify(ds)
    family, given = patient.name.split("^")
    assert ds.StudyDescription.startswith("CT for")
    assert family not in ds.StudyDescription and given not in ds.StudyDescription
    assert patient.patient_id not in ds.SeriesDescription
    assert ds.SeriesDescription.startswith("series 1")


def test_method_codes_record_profile_options_and_pixel_cleaning(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = deidentifier.deidentify(build_instance(patient)).dataset
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113103", "113107"]
    assert all(
        item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence
    )
    assert "113101" not in codes
    cleaned = deidentifier.deidentify(build_instance(patient), pixels_cleaned=True).dataset
    assert "113101" in [item.CodeValue for item in cleaned.DeidentificationMethodCodeSequence]
    assert cleaned.DeidentificationMethod[0].startswith("scrubber ")


def test_private_blocks_go_unless_named_safe(patient: SamplePatient) -> None:
    ds = build_instance(patient)
    Deidentifier(DeidConfig(project="TEST"), SECRET, None).deidentify(ds)
    assert not [tag for tag in ds.keys() if tag.is_private]

    keep = frozenset({PrivateTagSpec.parse("SYNTH PRIVATE,0009,03")})
    ds = build_instance(patient)
    Deidentifier(DeidConfig(project="TEST", keep_private=keep), SECRET, None).deidentify(ds)
    kept = sorted(tag for tag in ds.keys() if tag.is_private)
    assert kept == [0x00090010, 0x00091003]
    assert ds[0x00091003].value == "1.5"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert "113111" in codes


@pytest.mark.parametrize("text", ["SYNTH,0008,01", "SYNTH,0009", ",0009,01", "A,zz,01"])
def test_bad_private_specs_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        PrivateTagSpec.parse(text)


def test_strict_mode_keeps_only_listed_and_structural_attributes(
    patient: SamplePatient,
) -> None:
    ds = build_instance(patient)
    Deidentifier(DeidConfig(project="TEST", strict=True), SECRET, None).deidentify(ds)
    assert "Manufacturer" not in ds and "PatientPosition" not in ds
    for keyword in ("Rows", "PixelData", "KVP", "StudyInstanceUID", "Modality", "PixelSpacing"):
        assert keyword in ds
    lax = build_instance(patient)
    Deidentifier(DeidConfig(project="TEST"), SECRET, None).deidentify(lax)
    assert lax.Manufacturer == "Synthetic Scanners Inc"


def test_overlay_planes_are_removed_whole(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient, modality="CT")
    assert 0x60003000 in ds
    deidentifier.deidentify(ds)
    assert not [tag for tag in ds.keys() if 0x6000 <= tag.group <= 0x601E]


def test_nested_sequences_are_cleaned_at_every_depth(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient)
    item = Dataset()
    inner = Dataset()
    inner.PatientName = patient.name
    inner.PatientBirthDate = patient.birth_date
    inner.ReferencedSOPInstanceUID = patient.study_uid + ".5"
    item.ReferencedSeriesSequence = Sequence([inner])
    ds.ReferencedInstanceSequence = Sequence([item])
    deidentifier.deidentify(ds)
    nested = ds.ReferencedInstanceSequence[0].ReferencedSeriesSequence[0]
    assert nested["PatientName"].is_empty
    assert nested["PatientBirthDate"].is_empty
    assert nested.ReferencedSOPInstanceUID.startswith("2.25.")


def test_structured_content_text_is_replaced(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient)
    content = Dataset()
    content.ValueType = "TEXT"
    content.TextValue = f"Patient {patient.name} seen at {patient.institution}"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121106", "DCM", "Comment"
    content.ConceptNameCodeSequence = Sequence([name])
    ds.ContentSequence = Sequence([content])
    deidentifier.deidentify(ds)
    item = ds.ContentSequence[0]
    assert item.TextValue == "ANONYMIZED"
    assert item.ConceptNameCodeSequence[0].CodeMeaning == "Comment"


def test_encapsulated_documents_are_refused(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient)
    ds.EncapsulatedDocument = b"%PDF-1.4 patient report"
    with pytest.raises(UnsupportedContentError, match="encapsulated document") as caught:
        deidentifier.deidentify(ds)
    assert caught.value.reason == "unsupported_content"


def test_absurd_nesting_is_refused(deidentifier: Deidentifier, patient: SamplePatient) -> None:
    ds = build_instance(patient)
    node = ds
    for _ in range(40):
        child = Dataset()
        node.ReferencedSeriesSequence = Sequence([child])
        node = child
    with pytest.raises(DeidentificationError, match="deeper than"):
        deidentifier.deidentify(ds)


def test_values_in_iso_2022_survive_and_names_do_not(tmp_path: Path) -> None:
    patient = sample_patients(1, seed=2)[0]
    ds = build_instance(patient)
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.Manufacturer = "山田製作所"
    source = tmp_path / "jp.dcm"
    write_instance(ds, source)
    original = read_instance(source)
    manufacturer_bytes = original.get_item(0x00080070).value
    Deidentifier(DeidConfig(project="TEST"), SECRET, None).deidentify(original)
    write_instance(original, tmp_path / "out.dcm")
    out = read_instance(tmp_path / "out.dcm")
    assert out.get_item(0x00080070).value == manufacturer_bytes
    assert out.Manufacturer == "山田製作所"
    assert out.PatientName == "TEST_001"
    raw = (tmp_path / "out.dcm").read_bytes()
    assert "山田^太郎".encode("iso2022_jp") not in raw
    assert b"Yamada" not in raw


def test_utf8_names_are_replaced(deidentifier: Deidentifier) -> None:
    patient = sample_patients(2, seed=0)[1]
    assert patient.charset == "ISO_IR 192"
    ds = build_instance(patient)
    deidentifier.deidentify(ds)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    buffer = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    assert patient.name.split("^")[0].encode("utf-8") not in buffer.getvalue()


def test_project_names_are_checked() -> None:
    for bad in ("", "has space", "../up", "x" * 60):
        with pytest.raises(ConfigError):
            DeidConfig(project=bad)
    assert DeidConfig(project="iliac-ct").prefix == "ILIAC_CT"


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ConfigError, match="shorter than 16"):
        Deidentifier(DeidConfig(project="TEST"), b"short", None)


def test_unlisted_person_names_are_emptied_and_unlisted_uids_remapped(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient)
    ds.EvaluatorName = "Inspector^Ivan"  # a PN attribute PS3.15 does not list
    ds.MultiFrameSourceSOPInstanceUID = patient.study_uid + ".9"  # an unlisted instance UID
    ds.SOPClassesInStudy = ["1.2.840.10008.5.1.4.1.1.2", "1.3.12.2.1107.5.9.1"]
    deidentifier.deidentify(ds)
    assert ds["EvaluatorName"].is_empty
    assert ds.MultiFrameSourceSOPInstanceUID == UIDRemapper(SECRET)(patient.study_uid + ".9")
    assert ds.SOPClassesInStudy == ["1.2.840.10008.5.1.4.1.1.2", "1.3.12.2.1107.5.9.1"]


def test_retain_uids_keeps_unlisted_uids_too(patient: SamplePatient) -> None:
    ds = build_instance(patient)
    ds.MultiFrameSourceSOPInstanceUID = patient.study_uid + ".9"
    config = DeidConfig(project="TEST", options=frozenset({ProfileOption.RETAIN_UIDS}))
    Deidentifier(config, SECRET, None).deidentify(ds)
    assert ds.MultiFrameSourceSOPInstanceUID == patient.study_uid + ".9"
    assert ds.StudyInstanceUID == patient.study_uid


def test_dicomdir_is_refused_as_a_directory(deidentifier: Deidentifier) -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("DICOMDIR", read=False)
    assert isinstance(path, str)
    with pytest.raises(DirectoryFileError, match="DICOMDIR") as caught:
        deidentifier.deidentify(read_instance(Path(path)))
    assert caught.value.reason == "dicomdir"


def test_graphic_annotation_text_is_cleaned_under_the_default_options(
    deidentifier: Deidentifier, patient: SamplePatient
) -> None:
    ds = build_instance(patient)
    text = Dataset()
    text.UnformattedTextValue = f"{patient.name.split('^')[0]} arrow, {patient.patient_id}"
    annotation = Dataset()
    annotation.GraphicLayer = "LAYER1"
    annotation.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    deidentifier.deidentify(ds)
    cleaned = ds.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue
    assert patient.name.split("^")[0] not in cleaned
    assert patient.patient_id not in cleaned
    assert "arrow" in cleaned
    assert ds.GraphicAnnotationSequence[0].GraphicLayer == "LAYER1"


def _named(tmp_path: Path, name: bytes, charset: str, file: str) -> Dataset:
    ds = build_instance(sample_patients(1, seed=4)[0], seed=1)
    ds.SpecificCharacterSet = charset
    ds.PatientName = "placeholder"
    path = tmp_path / file
    write_instance(ds, path)
    data = path.read_bytes().replace(b"placeholder ", name.ljust(12, b" ")[:12])
    path.write_bytes(data)
    return read_instance(path)


def test_identifying_values_read_the_same_for_every_instance_of_a_series(
    tmp_path: Path,
) -> None:
    """A worker remembers how raw ASCII names and dates read; bytes beyond ASCII are read with
    each instance's own character set (the same bytes are another name in another set)."""
    deid = Deidentifier(DeidConfig(project="TEST"), SECRET, None)
    first = deid.deidentify(_named(tmp_path, b"MILLER^ROSE", "ISO_IR 100", "1.dcm")).terms
    again = deid.deidentify(_named(tmp_path, b"MILLER^ROSE", "ISO_IR 100", "2.dcm")).terms
    assert "MILLER" in first and first.terms() == again.terms()
    latin = deid.deidentify(_named(tmp_path, b"M\xdcLLER^ROSE", "ISO_IR 100", "3.dcm")).terms
    cyrillic = deid.deidentify(_named(tmp_path, b"M\xdcLLER^ROSE", "ISO_IR 144", "4.dcm")).terms
    assert "MÜLLER" in latin and "MÜLLER" not in cyrillic
    assert any("ROSE" in term for term in cyrillic.terms())
