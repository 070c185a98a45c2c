"""Synthetic sample DICOM instances with fake patient data, built in code.

They feed ``make demo`` and the test suite. Every identifying value is invented and drawn from a
seeded generator, so runs are reproducible. The set covers what de-identification must get right:
several patients and studies, nested sequences that carry identifiers and references, private
blocks, overlays, free text that repeats the patient's name, several character sets, transfer
syntaxes (implicit and explicit little endian, explicit big endian, deflated, RLE lossless) and
multi-frame images.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "SamplePatient",
    "build_image",
    "build_instance",
    "image_values",
    "sample_patients",
    "write_samples",
]

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
US_MULTIFRAME_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")

_FAMILY = ["Halvorsen", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Ferreira", "Kowalski", "Novak"]
_GIVEN = ["Ingrid", "Chidi", "Astrid", "Lucien", "Haruki", "Beatriz", "Marek", "Vesna"]
_STREETS = ["Fjellveien", "Harbour Road", "Rue Lepic", "Elm Street", "Sakura-dori"]
_INSTITUTIONS = ["Haukeland Test Hospital", "St. Fictional Medical Center", "Clinique Imaginaire"]
_UID_ROOT = "1.2.826.0.1.3680043.10.1172."  # a test root: the UIDs are random below it


@dataclass
class SamplePatient:
    """A fake patient and the identifying values an instance of theirs carries."""

    name: str
    patient_id: str
    birth_date: str
    sex: str
    address: str
    institution: str
    physician: str
    accession: str
    study_date: str
    study_uid: str
    frame_of_reference_uid: str
    charset: str = "ISO_IR 100"
    series_uids: dict[str, str] = field(default_factory=dict)

    def identifying_values(self) -> list[str]:
        """Return the values that must not survive de-identification."""
        family, given = self.name.split("^")[:2]
        return [
            self.name,
            family,
            given,
            self.patient_id,
            self.birth_date,
            self.address,
            self.institution,
            self.physician.split("^")[0],
            self.accession,
            self.study_uid,
            self.frame_of_reference_uid,
            *self.series_uids.values(),
        ]


def sample_patients(count: int = 3, seed: int = 0) -> list[SamplePatient]:
    """Invent ``count`` patients, reproducibly.

    Parameters
    ----------
    count : int, optional
        How many patients.
    seed : int, optional
        Seed of the generator.

    Returns
    -------
    list of SamplePatient
        The patients; the second one's name uses ISO-IR 192 (UTF-8) characters.
    """
    rng = random.Random(seed)
    patients = []
    for index in range(count):
        family, given = rng.choice(_FAMILY), rng.choice(_GIVEN)
        charset = "ISO_IR 100"
        if index % 3 == 1:
            family, charset = family + "ø", "ISO_IR 192"
        elif index % 3 == 2:
            given, charset = given + "é", "ISO_IR 100"
        patients.append(
            SamplePatient(
                name=f"{family}^{given}",
                patient_id=f"MRN{rng.randrange(10**7, 10**8)}",
                birth_date=f"{rng.randrange(1930, 2015)}{rng.randrange(1, 13):02d}"
                f"{rng.randrange(1, 29):02d}",
                sex=rng.choice("FM"),
                address=f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}",
                institution=rng.choice(_INSTITUTIONS),
                physician=f"{rng.choice(_FAMILY)}rud^{rng.choice(_GIVEN)}",
                accession=f"ACC{rng.randrange(10**6, 10**7)}",
                study_date=f"20{rng.randrange(10, 24):02d}{rng.randrange(1, 13):02d}"
                f"{rng.randrange(1, 29):02d}",
                study_uid=_UID_ROOT + str(rng.randrange(10**20, 10**21)),
                frame_of_reference_uid=_UID_ROOT + str(rng.randrange(10**20, 10**21)),
                charset=charset,
            )
        )
    return patients


def _series_uid(patient: SamplePatient, series: str, rng: random.Random) -> str:
    if series not in patient.series_uids:
        patient.series_uids[series] = _UID_ROOT + str(rng.randrange(10**20, 10**21))
    return patient.series_uids[series]


def _pixels(rows: int, cols: int, frames: int, rgb: bool, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    base = (x * 3 + y * 2) % 256
    noise = rng.integers(0, 16, size=(frames, rows, cols))
    if rgb:
        stack = np.stack([(base + noise) % 256, (255 - base + noise) % 256, (noise * 8) % 256], -1)
        return np.asarray(stack, dtype=np.uint8)
    return np.asarray((base * 8 + noise) % 4096, dtype=np.uint16)


def build_instance(
    patient: SamplePatient,
    *,
    modality: str = "CT",
    series: str = "1",
    instance_number: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
    frames: int = 1,
    seed: int = 0,
) -> Dataset:
    """Build one instance of ``patient`` with identifying values throughout its header.

    Parameters
    ----------
    patient : SamplePatient
        Whose instance it is.
    modality : {"CT", "MR", "US", "OT"}
        Modality; ``US`` gives a multi-frame RGB ultrasound cine, ``OT`` a secondary capture.
    series : str
        Series label within the study (one Series Instance UID per label).
    instance_number : int
        Instance Number.
    transfer_syntax : str
        Transfer syntax UID of the file meta; RLE Lossless compresses the pixels.
    frames : int
        Number of frames (multi-frame for more than one).
    seed : int
        Seed for UIDs and pixel noise.

    Returns
    -------
    Dataset
        The instance with file meta set, ready for :func:`pydicom.dcmwrite`.
    """
    rng = random.Random(f"{seed}/{patient.patient_id}/{series}/{instance_number}")
    sop_class = {
        "CT": CT_IMAGE_STORAGE,
        "MR": MR_IMAGE_STORAGE,
        "US": US_MULTIFRAME_STORAGE,
        "OT": SecondaryCaptureImageStorage,
    }[modality]
    ds = Dataset()
    ds.SpecificCharacterSet = patient.charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = patient.study_date
    ds.InstanceCreationTime = "101010"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _UID_ROOT + str(rng.randrange(10**20, 10**21))
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = patient.study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101500.250000"
    ds.AccessionNumber = patient.accession
    ds.Modality = modality
    ds.Manufacturer = "Synthetic Scanners Inc"
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = f"{patient.address}, Bergen"
    ds.ReferringPhysicianName = patient.physician
    ds.StationName = "SYNTH-CT-01"
    ds.StudyDescription = f"{modality} for {patient.name.replace('^', ' ')}"
    ds.SeriesDescription = f"series {series} {patient.patient_id}"
    ds.OperatorsName = "Operator^Olga"
    ds.ManufacturerModelName = "Synth 9000"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "SYNTH-HOSP"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = "042Y"
    ds.PatientAddress = patient.address
    ds.OtherPatientIDsSequence = Sequence([_other_id(patient)])
    ds.PatientComments = f"Lives at {patient.address}"
    ds.DeviceSerialNumber = "SN-4711"
    ds.SoftwareVersions = "1.0"
    ds.StudyInstanceUID = patient.study_uid
    ds.SeriesInstanceUID = _series_uid(patient, series, rng)
    ds.StudyID = f"S{patient.accession[-4:]}"
    ds.SeriesNumber = int(series) if series.isdigit() else 1
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = patient.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.Laterality = ""
    ds.PatientOrientation = ["L", "P"] if modality in ("US", "OT") else ""
    ds.AcquisitionNumber = 1
    if modality == "CT":
        ds.KVP = 120
    if modality == "MR":
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType, ds.RepetitionTime, ds.EchoTime = "2D", 500, 15
        ds.EchoTrainLength = 1
    if modality == "OT":
        ds.ConversionType = "WSD"
    ds.RequestAttributesSequence = Sequence([_request(patient)])
    ds.ReferencedImageSequence = Sequence([_reference(patient, rng)])
    ds.ReferencedStudySequence = Sequence([_study_reference(patient)])
    _add_private(ds, patient)
    _add_pixels(ds, modality, frames, seed)
    if modality == "CT":
        _add_overlay(ds)
    ds.file_meta = _meta(ds, transfer_syntax)
    if transfer_syntax == ExplicitVRBigEndian and ds.BitsAllocated > 8:
        # The writer copies OW bytes as they are: give it big-endian samples.
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    return ds


def _other_id(patient: SamplePatient) -> Dataset:
    item = Dataset()
    item.PatientID = patient.patient_id + "-OLD"
    item.IssuerOfPatientID = "OLD-HOSP"
    item.TypeOfPatientID = "TEXT"
    return item


def _request(patient: SamplePatient) -> Dataset:
    item = Dataset()
    item.AccessionNumber = patient.accession
    item.RequestedProcedureID = f"RP{patient.accession}"
    item.ScheduledProcedureStepID = f"SPS{patient.accession}"
    item.StudyInstanceUID = patient.study_uid
    return item


def _reference(patient: SamplePatient, rng: random.Random) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = _UID_ROOT + str(rng.randrange(10**20, 10**21))
    return item


def _study_reference(patient: SamplePatient) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    item.ReferencedSOPInstanceUID = patient.study_uid
    return item


def _add_private(ds: Dataset, patient: SamplePatient) -> None:
    block = ds.private_block(0x0009, "SYNTH PRIVATE", create=True)
    block.add_new(0x01, "LO", patient.name.replace("^", " "))
    block.add_new(0x02, "LO", patient.patient_id)
    block.add_new(0x03, "DS", "1.5")
    nested = Dataset()
    nested.PatientName = patient.name
    block.add_new(0x04, "SQ", Sequence([nested]))


def _add_pixels(ds: Dataset, modality: str, frames: int, seed: int) -> None:
    rgb = modality in ("US", "OT")
    rows, cols = (48, 64) if rgb else (64, 64)
    pixels = _pixels(rows, cols, frames, rgb, np.random.default_rng(seed))
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if rgb else 16
    ds.BitsStored = 8 if rgb else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063
    else:
        pixels = pixels[0]
    if not rgb:
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 2.5
        ds.ImagePositionPatient = [0, 0, 0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelData = pixels.tobytes()


def _add_overlay(ds: Dataset) -> None:
    bits = np.zeros((ds.Rows, ds.Columns), dtype=np.uint8)
    bits[2:6, 2:30] = 1
    ds.add_new(0x60000010, "US", ds.Rows)
    ds.add_new(0x60000011, "US", ds.Columns)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", np.packbits(bits.ravel(), bitorder="little").tobytes())
    ds.add_new(0x60004000, "LT", "Overlay drawn by Operator Olga")


def _meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = (
        ExplicitVRLittleEndian if transfer_syntax == RLELossless else UID(transfer_syntax)
    )
    meta.ImplementationClassUID = generate_uid(prefix=_UID_ROOT)
    meta.SourceApplicationEntityTitle = "SYNTH_PACS"
    return meta


_LAYOUT: tuple[tuple[str, str, str, int], ...] = (
    # modality, series label, transfer syntax, frames
    ("CT", "1", ExplicitVRLittleEndian, 1),
    ("CT", "1", ImplicitVRLittleEndian, 1),
    ("MR", "2", ExplicitVRBigEndian, 1),
    ("MR", "2", DeflatedExplicitVRLittleEndian, 1),
    ("CT", "3", RLELossless, 1),
    ("US", "4", ExplicitVRLittleEndian, 4),
)


def iter_sample_instances(
    patients: int = 3, seed: int = 0
) -> Iterator[tuple[Path, Dataset, SamplePatient]]:
    """Yield ``(relative path, data set, patient)`` for the sample tree.

    Parameters
    ----------
    patients : int, optional
        How many patients.
    seed : int, optional
        Seed of every random choice.

    Yields
    ------
    tuple of (Path, Dataset, SamplePatient)
        Where the instance goes, the instance, and its patient.
    """
    for p_index, patient in enumerate(sample_patients(patients, seed), start=1):
        for number, (modality, series, syntax, frames) in enumerate(_LAYOUT, start=1):
            ds = build_instance(
                patient,
                modality=modality,
                series=series,
                instance_number=number,
                transfer_syntax=syntax,
                frames=frames,
                seed=seed,
            )
            path = Path(f"patient{p_index:02d}") / f"series{series}" / f"IM{number:04d}.dcm"
            yield path, ds, patient


def write_samples(out_dir: Path, patients: int = 3, seed: int = 0) -> list[Path]:
    """Write the sample tree under ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Where to write (created if missing).
    patients : int, optional
        How many patients.
    seed : int, optional
        Seed of every random choice.

    Returns
    -------
    list of Path
        The files written.
    """
    from scrubber.dicom_io import write_instance

    written = []
    for rel, ds, _patient in iter_sample_instances(patients, seed):
        path = Path(out_dir) / rel
        write_instance(ds, path)
        written.append(path)
    return written


def image_values(
    rows: int,
    columns: int,
    frames: int,
    samples: int,
    bits_stored: int,
    signed: bool,
    seed: int = 0,
) -> np.ndarray:
    """Make stored values: a gradient, noise and a bright block per frame (where text would be).

    Parameters
    ----------
    rows, columns, frames, samples : int
        Shape of the image.
    bits_stored : int
        Bits per sample; values span the full range.
    signed : bool
        Signed (two's complement) samples.
    seed : int, optional
        Seed of the noise.

    Returns
    -------
    numpy.ndarray
        ``(frames, rows, columns[, samples])`` of the smallest integer type that holds the values.
    """
    rng = np.random.default_rng(seed)
    low = -(2 ** (bits_stored - 1)) if signed else 0
    high = 2 ** (bits_stored - 1) - 1 if signed else 2**bits_stored - 1
    shape = (frames, rows, columns) + ((samples,) if samples > 1 else ())
    ramp = np.linspace(low, high, columns)
    values = np.broadcast_to(ramp.reshape((1, 1, columns) + (1,) * (samples > 1)), shape)
    values = values + rng.integers(-3, 4, size=shape)
    values = np.clip(values, low, high)
    for index in range(frames):  # a "text" block that moves from frame to frame
        values[index, 2 : 2 + max(2, rows // 8), 2 + index : 2 + index + columns // 3] = high
    dtype = (
        {8: np.int8, 16: np.int16, 32: np.int32}[_allocated(bits_stored)]
        if signed
        else {
            8: np.uint8,
            16: np.uint16,
            32: np.uint32,
        }[_allocated(bits_stored)]
    )
    return np.asarray(values, dtype=dtype)


def _allocated(bits_stored: int) -> int:
    return 8 if bits_stored <= 8 else 16 if bits_stored <= 16 else 32


def build_image(
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    signed: bool = False,
    frames: int = 1,
    planar_configuration: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    rows: int = 64,
    columns: int = 80,
    seed: int = 0,
) -> tuple[Dataset, np.ndarray]:
    """Build an image instance and return it with the stored values it encodes.

    Parameters
    ----------
    photometric : str
        MONOCHROME1, MONOCHROME2, RGB, YBR_FULL or PALETTE COLOR (8-bit, a grey-ramp palette).
    bits_stored : int
        Bits per sample (Bits Allocated is 8, 16 or 32 accordingly).
    signed : bool
        Pixel Representation 1 (greyscale only).
    frames : int
        Number of frames.
    planar_configuration : int
        0 or 1 for colour.
    transfer_syntax : str
        Implicit/explicit little endian, explicit big endian, deflated, or any syntax pydicom can
        encode losslessly (RLE Lossless, JPEG 2000 Lossless).
    rows, columns : int
        Frame size.
    seed : int
        Seed of the noise.

    Returns
    -------
    tuple of (Dataset, numpy.ndarray)
        The instance (file meta set) and its values ``(frames, rows, columns[, 3])``.
    """
    samples = 3 if photometric in ("RGB", "YBR_FULL") else 1
    values = image_values(rows, columns, frames, samples, bits_stored, signed, seed)
    patient = sample_patients(1, seed=seed)[0]
    ds = build_instance(patient, modality="OT")
    for keyword in ("PixelData", "PlanarConfiguration", "RescaleIntercept", "RescaleSlope"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = _allocated(bits_stored)
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if samples > 1:
        ds.PlanarConfiguration = planar_configuration
    if frames > 1:
        ds.NumberOfFrames = frames
    else:
        for keyword in ("NumberOfFrames", "FrameTime", "FrameIncrementPointer"):
            if keyword in ds:
                delattr(ds, keyword)
    big_endian = transfer_syntax == ExplicitVRBigEndian
    if photometric == "PALETTE COLOR":
        # an uneven ramp, so that a table read in the wrong byte order shows
        ramp = np.arange(256, dtype=np.uint16) * 256 + np.arange(256, dtype=np.uint16) // 2
        order = ">u2" if big_endian else "<u2"
        for colour, table in (("Red", ramp), ("Green", ramp[::-1].copy()), ("Blue", ramp)):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", table.astype(order).tobytes())
    stored = values
    if samples > 1 and planar_configuration == 1:
        stored = np.moveaxis(values, -1, 1)  # frames, samples, rows, columns
    data = stored.astype(stored.dtype.newbyteorder(">") if big_endian else stored.dtype).tobytes()
    ds.PixelData = data + b"\x00" * (len(data) % 2)
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    ds.file_meta.TransferSyntaxUID = (
        UID(transfer_syntax)
        if transfer_syntax
        in (
            ImplicitVRLittleEndian,
            ExplicitVRLittleEndian,
            ExplicitVRBigEndian,
            DeflatedExplicitVRLittleEndian,
        )
        else ExplicitVRLittleEndian
    )
    if ds.file_meta.TransferSyntaxUID != transfer_syntax:
        ds.compress(transfer_syntax, values if frames > 1 else values[0])
    return ds, values
