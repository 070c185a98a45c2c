"""The metadata de-identifier: PS3.15 Annex E applied to every element at every depth.

:class:`Deidentifier` works on a :class:`pydicom.dataset.Dataset` in place. It

1. captures the identifying terms of the header (:class:`~scrubber.deid.terms.HeaderTerms`),
2. walks every element, sequences and private blocks included, and carries out the action the
   :class:`~scrubber.deid.profile.Profile` resolves for it,
3. replaces Patient Name and Patient ID by the project pseudonym, Accession Numbers by keyed
   pseudonyms, instance UIDs by keyed ``2.25`` UIDs, and shifts dates,
4. records what it did in the data set (Patient Identity Removed, De-identification Method and its
   code sequence, Longitudinal Temporal Information Modified) and rebuilds the file meta.

Elements it does not change are left as pydicom read them (raw bytes), so untouched values,
PixelData included, are written back byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from pydicom import config as pydicom_config
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import VR

from scrubber import __version__
from scrubber.deid.dates import DateShifter, UnparsableDateError, shift_days_from_secret
from scrubber.deid.keystore import KeyStore
from scrubber.deid.profile import (
    BASIC_PROFILE_CODE,
    CLEAN_PIXEL_DATA_CODE,
    DEFAULT_OPTIONS,
    Action,
    Profile,
    ProfileOption,
)
from scrubber.deid.terms import IDENTIFYING_KEYWORDS, HeaderTerms, element_vr
from scrubber.deid.uids import UIDRemapper, is_well_known_uid
from scrubber.errors import (
    ConfigError,
    DeidentificationError,
    ScrubberError,
    UnreadableDicomError,
    converting_a_value,
    where,
)

_log = logging.getLogger(__name__)

__all__ = [
    "DateShiftScope",
    "DeidConfig",
    "DeidResult",
    "Deidentifier",
    "DirectoryFileError",
    "PrivateTagSpec",
    "UnsupportedContentError",
]

IMPLEMENTATION_CLASS_UID = "2.25.161016155325838318617313880331957556787"
IMPLEMENTATION_VERSION_NAME = f"SCRUBBER_{__version__}"[:16]

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
ISSUER_OF_PATIENT_ID = 0x00100021
ACCESSION_NUMBER = 0x00080050
STUDY_ID = 0x00200010
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
ENCAPSULATED_DOCUMENT = 0x00420011
DATA_SET_TRAILING_PADDING = 0xFFFCFFFC
PATIENT_IDENTITY_REMOVED = 0x00120062
DEIDENTIFICATION_METHOD = 0x00120063
DEIDENTIFICATION_CODES = 0x00120064
LONGITUDINAL_TEMPORAL_MODIFIED = 0x00280303
DIRECTORY_RECORD_SEQUENCE = 0x00041220
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_IDENTIFYING_TAGS = frozenset(int(tag_for_keyword(k) or 0) for k in IDENTIFYING_KEYWORDS) - {0}
# VRs of unlisted attributes that still need work in a normal walk: sequences are walked, UIDs
# remapped, dates shifted.
_UNLISTED_WORK_VRS = frozenset({"SQ", "UI", "DA", "DT", "PN"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "IS", "DS"})
#: The VR codes DICOM defines; a raw element with any other cannot be interpreted or rewritten.
_KNOWN_VRS = frozenset(vr.value for vr in VR)


def _unknown_vr(vr: str | None) -> bool:
    """Whether a raw element's VR code is one DICOM does not define (None: implicit, looked up)."""
    return vr is not None and vr not in _KNOWN_VRS


_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}
# Free text inside a replaced (D) or cleaned (C) sequence that is kept: coded concepts and the
# structure of structured reports and graphic annotations identify nobody.
_STRUCTURAL_TEXT_KEYWORDS = frozenset(
    {
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ContextIdentifier",
        "MappingResource",
        "MappingResourceName",
        "ContextGroupExtensionFlag",
        "TemplateIdentifier",
        "GraphicLayer",
        "ReferencedContentItemIdentifier",
        "UnitsType",
    }
)
# Attributes the profile removes (X) that some IODs require to be present (Type 2) when another
# attribute is there: emptied instead, which leaks nothing and keeps the object conformant.
_TYPE2_WHEN_PRESENT: dict[str, tuple[str, ...]] = {
    # Patient module, Type 2C when the patient is an animal.
    "ResponsiblePerson": ("PatientSpeciesDescription", "PatientSpeciesCodeSequence"),
    "ResponsibleOrganization": ("PatientSpeciesDescription", "PatientSpeciesCodeSequence"),
}
# UI attributes the table does not list and that name kinds of things (SOP classes, syntaxes,
# coding schemes), not instances: kept. Every other unlisted UID is remapped like the listed ones.
_KIND_UID_SUFFIXES = ("SyntaxUID", "SchemeUID", "ResourceUID", "SyntaxUIDInFile")
_STRICT_KEEP_KEYWORDS = frozenset(
    {
        # SOP Common, General Series/Image identification (values replaced by the profile).
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "Modality",
        "ImageType",
        "SeriesNumber",
        "InstanceNumber",
        "AcquisitionNumber",
        "PatientOrientation",
        "Laterality",
        "ImageLaterality",
        "BodyPartExamined",
        "ConversionType",
        "PresentationIntentType",
        "BurnedInAnnotation",
        "RecognizableVisualFeatures",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        # Image Pixel module.
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PixelAspectRatio",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor",
        "BluePaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData",
        "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData",
        "ICCProfile",
        "ColorSpace",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        "PixelPaddingValue",
        "PixelPaddingRangeLimit",
        # Multi-frame and cine.
        "NumberOfFrames",
        "FrameIncrementPointer",
        "FrameTime",
        "FrameTimeVector",
        "CineRate",
        "RecommendedDisplayFrameRate",
        "StartTrim",
        "StopTrim",
        # Geometry.
        "PixelSpacing",
        "ImagerPixelSpacing",
        "NominalScannedPixelSpacing",
        "PixelSpacingCalibrationType",
        "SliceThickness",
        "SpacingBetweenSlices",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "SliceLocation",
        "PositionReferenceIndicator",
        "FrameOfReferenceUID",
        # Modality and VOI LUT.
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "WindowCenter",
        "WindowWidth",
        "WindowCenterWidthExplanation",
        "VOILUTFunction",
        "ModalityLUTSequence",
        "VOILUTSequence",
        "LUTDescriptor",
        "LUTData",
        "LUTExplanation",
        "ModalityLUTType",
        # Enhanced multi-frame functional groups.
        "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence",
        "PixelMeasuresSequence",
        "PlanePositionSequence",
        "PlaneOrientationSequence",
        "FrameContentSequence",
        "PixelValueTransformationSequence",
        "FrameVOILUTSequence",
        "DimensionIndexValues",
        "InStackPositionNumber",
        "StackID",
        "TemporalPositionIndex",
        # Ultrasound regions.
        "SequenceOfUltrasoundRegions",
        "RegionSpatialFormat",
        "RegionDataType",
        "RegionFlags",
        "RegionLocationMinX0",
        "RegionLocationMinY0",
        "RegionLocationMaxX1",
        "RegionLocationMaxY1",
        "PhysicalUnitsXDirection",
        "PhysicalUnitsYDirection",
        "PhysicalDeltaX",
        "PhysicalDeltaY",
        "ReferencePixelX0",
        "ReferencePixelY0",
        # CT/MR acquisition physics that research uses and that identify nobody.
        "KVP",
        "ExposureTime",
        "XRayTubeCurrent",
        "Exposure",
        "ConvolutionKernel",
        "ScanningSequence",
        "SequenceVariant",
        "ScanOptions",
        "MRAcquisitionType",
        "RepetitionTime",
        "EchoTime",
        "InversionTime",
        "FlipAngle",
        "MagneticFieldStrength",
        "EchoTrainLength",
        "ImagingFrequency",
        "ImagedNucleus",
        # Coded concepts inside kept sequences.
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "ReferencedSOPClassUID",
        "ReferencedFrameNumber",
        "ReferencedSegmentNumber",
        # The de-identification record itself.
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    }
)


class UnsupportedContentError(DeidentificationError):
    """The instance carries content the metadata de-identifier cannot clean (a PDF, say)."""

    reason = "unsupported_content"


class DirectoryFileError(UnsupportedContentError):
    """The instance is a DICOMDIR: an index of other files, rebuilt rather than de-identified."""

    reason = "dicomdir"


class DateShiftScope(StrEnum):
    """Whether one date shift serves the whole project or each patient gets their own."""

    PROJECT = "project"
    PATIENT = "patient"


@dataclass(frozen=True)
class PrivateTagSpec:
    """A private attribute known to be safe: creator, group and element offset in the block.

    Parameters
    ----------
    creator : str
        The Private Creator value (``GEMS_ACQU_01``).
    group : int
        The odd group number.
    offset : int
        The low byte of the element number (``0x23`` for ``(0019,xx23)``).
    """

    creator: str
    group: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> PrivateTagSpec:
        """Parse ``CREATOR,gggg,xx`` (hexadecimal group and element offset).

        Parameters
        ----------
        text : str
            The specification.

        Returns
        -------
        PrivateTagSpec
            The parsed specification.

        Raises
        ------
        ConfigError
            If the text is malformed or the group is not private.
        """
        parts = [p.strip() for p in text.rsplit(",", 2)]
        try:
            creator, group_text, offset_text = parts
            group, offset = int(group_text, 16), int(offset_text[-2:], 16)
        except ValueError as exc:
            raise ConfigError(
                f"Cannot parse the private tag '{text}': write CREATOR,gggg,xx, for example "
                "GEMS_ACQU_01,0019,23."
            ) from exc
        if group % 2 == 0 or not creator:
            raise ConfigError(
                f"'{text}' is not a private attribute: the group must be odd and the creator given."
            )
        return cls(creator=creator, group=group, offset=offset)


@dataclass(frozen=True)
class DeidConfig:
    """How a project de-identifies metadata.

    Parameters
    ----------
    project : str
        The project name; its upper-cased form is the pseudonym prefix (``ILIAC_CT`` gives
        ``ILIAC_CT_001``).
    options : frozenset of ProfileOption
        Profile options applied on top of the Basic Profile.
    strict : bool
        Keep only attributes the profile or a built-in keep list names (standard attributes the
        table does not list are removed, as the RSNA Anonymizer does).
    keep_private : frozenset of PrivateTagSpec
        Private attributes known to be safe; kept when the *Retain Safe Private* option is on
        (naming any turns the option on).
    date_shift_scope : DateShiftScope
        One shift for the project, or one per patient.
    date_shift_days : int or None
        A fixed shift in days instead of one derived from the secret.
    max_depth : int
        Deepest sequence nesting accepted; deeper input is refused.
    """

    project: str
    options: frozenset[ProfileOption] = DEFAULT_OPTIONS
    strict: bool = False
    keep_private: frozenset[PrivateTagSpec] = frozenset()
    date_shift_scope: DateShiftScope = DateShiftScope.PROJECT
    date_shift_days: int | None = None
    max_depth: int = 32

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,47}", self.project):
            raise ConfigError(
                "The project name must be 1 to 48 letters, digits, '_' or '-', starting with a "
                "letter or digit (it becomes the pseudonym prefix)."
            )
        if self.keep_private and ProfileOption.RETAIN_SAFE_PRIVATE not in self.options:
            object.__setattr__(self, "options", self.options | {ProfileOption.RETAIN_SAFE_PRIVATE})

    @property
    def prefix(self) -> str:
        """The pseudonym prefix: the project name upper-cased, ``-`` turned into ``_``."""
        return self.project.upper().replace("-", "_")


@dataclass
class DeidResult:
    """What :meth:`Deidentifier.deidentify` did to one instance (no PHI inside but ``terms``).

    Attributes
    ----------
    dataset : Dataset
        The de-identified data set (the same object that was passed in).
    pseudonym : str
        The patient pseudonym now in Patient Name and Patient ID.
    terms : HeaderTerms
        Identifying terms captured from the original header, for cleaning text and pixels.
        They are PHI: keep them in memory only.
    actions : Counter
        How many elements each action touched (keys ``X``, ``Z``, ``D``, ``C``, ``U``,
        ``private``, ``shifted``, ``strict``).
    """

    dataset: Dataset
    pseudonym: str
    terms: HeaderTerms
    actions: Counter[str] = field(default_factory=Counter)


class _Mode(StrEnum):
    NORMAL = "normal"
    DUMMY = "dummy"  # inside a sequence whose action is D: free text replaced
    CLEAN = "clean"  # inside a sequence whose action is C: free text cleaned of header terms


@dataclass
class _Walk:
    terms: HeaderTerms
    shifter: DateShifter | None
    actions: Counter[str]
    tag: int = 0
    changes: int = 0  # mutations so far: a walked sequence with none is put back as read
    pending_text: list[tuple[Dataset, BaseTag]] = field(default_factory=list)


#: Raw identifying values remembered per worker with what they read as (the instances of a
#: series repeat the same names and dates; reading them is pydicom's slowest path).
_CAPTURE_CACHE: Final = 4096


def _capture_key(raw: DataElement | RawDataElement, vr: str) -> tuple[str, bytes] | None:
    """Key under which a raw value's reading can be remembered, or None.

    Only raw ASCII bytes qualify: every character set DICOM allows reads them alike, so the
    bytes and the VR decide the strings, whatever the data set's Specific Character Set.
    """
    if not isinstance(raw, RawDataElement) or not isinstance(raw.value, bytes):
        return None
    if not raw.value.isascii() or b"\x1b" in raw.value:
        return None
    return vr, raw.value


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


class Deidentifier:
    """Apply a project's de-identification to data sets, in place.

    Parameters
    ----------
    config : DeidConfig
        The project's choices.
    secret : bytes
        The project secret (keys UIDs, accession pseudonyms and date shifts).
    keystore : KeyStore or None
        The project's re-identification key; ``None`` keeps patient indices in memory only
        (tests and dry runs).

    Raises
    ------
    ConfigError
        If the secret is too short or the options are inconsistent.
    """

    def __init__(self, config: DeidConfig, secret: bytes, keystore: KeyStore | None) -> None:
        if len(secret) < 16:
            raise ConfigError(
                "The project secret is shorter than 16 bytes; use a long random secret "
                "(for example the output of `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`)."
            )
        self.config = config
        self.profile = Profile(config.options)
        self.keystore = keystore
        self._secret = secret
        self._uids = UIDRemapper(secret)
        self._identifier_key = hmac.new(secret, b"scrubber/identifier", hashlib.sha256).digest()
        self._memory_index: dict[str, int] = {}
        self._captured: dict[tuple[str, bytes], list[str]] = {}
        self._project_shift = (
            config.date_shift_days
            if config.date_shift_days is not None
            else shift_days_from_secret(secret)
        )
        self._safe_private = {(s.creator, s.group, s.offset) for s in config.keep_private}
        self._retain_safe_private = self.profile.private_action != Action.REMOVE
        self._retain_uids = ProfileOption.RETAIN_UIDS in self.profile.options
        option_codes = sorted((o.code, o.meaning) for o in self.profile.options)
        self._codes = [BASIC_PROFILE_CODE, *option_codes]
        self._codes_with_pixels = [BASIC_PROFILE_CODE, CLEAN_PIXEL_DATA_CODE, *option_codes]
        if self.profile.shifts_dates:
            self._temporal = "MODIFIED"
        elif self.profile.keeps_dates:
            self._temporal = "UNMODIFIED"
        else:
            self._temporal = "REMOVED"

    # -- public API ---------------------------------------------------------------------------

    def deidentify(self, ds: Dataset, *, pixels_cleaned: bool = False) -> DeidResult:
        """De-identify ``ds`` in place.

        Parameters
        ----------
        ds : Dataset
            The data set as read from a file; its file meta is rebuilt.
        pixels_cleaned : bool, optional
            Whether burned-in text was removed from the pixels; adds the *Clean Pixel Data*
            code (113101) to the de-identification method.

        Returns
        -------
        DeidResult
            The data set, the patient pseudonym, the captured terms and action counts.

        Raises
        ------
        UnsupportedContentError
            If the instance carries an encapsulated document.
        DeidentificationError
            If the data set cannot be walked (nesting too deep, an unexpected failure).
        UnreadableDicomError
            If an element inside a sequence has a VR that DICOM does not define (a corrupted
            file: it could only be copied through, unreadable to the next reader), or a value
            cannot be converted to its VR (too short, out of range, undecodable text).
        """
        walk = _Walk(terms=HeaderTerms(), shifter=None, actions=Counter())
        # pydicom warns about odd values while converting them, quoting them: never let that out.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pseudonym = self._deidentify(ds, walk, pixels_cleaned=pixels_cleaned)
        if self.keystore is not None:
            self.keystore.flush()
        return DeidResult(dataset=ds, pseudonym=pseudonym, terms=walk.terms, actions=walk.actions)

    def _deidentify(self, ds: Dataset, walk: _Walk, *, pixels_cleaned: bool) -> str:
        try:
            if _is_directory(ds):
                raise DirectoryFileError(
                    "The file is a DICOMDIR: an index whose records point at the original files "
                    "by name and byte offset, so it cannot be rewritten in place. It is left out; "
                    "build a new one from the de-identified files if you need one."
                )
            if ENCAPSULATED_DOCUMENT in ds:
                raise UnsupportedContentError(
                    "The instance holds an encapsulated document (PDF, CDA or similar) whose "
                    "content the metadata de-identifier cannot clean; it is refused so that no "
                    "PHI inside it leaves. Review it by hand."
                )
            patient_key, original_id, original_name = self._patient(ds)
            walk.shifter = self._shifter(patient_key)
            self._walk(ds, walk, depth=0, mode=_Mode.NORMAL)
            # Free text is cleaned once every identifying term of the header has been seen.
            for item, tag in walk.pending_text:
                self._clean_text(item, tag, walk)
            pseudonym = self._pseudonymise(ds, patient_key, original_id, original_name)
            self._mark(ds, pixels_cleaned=pixels_cleaned)
            self._rebuild_file_meta(ds)
        except ScrubberError:
            raise
        except RecursionError:
            raise DeidentificationError(
                "The data set nests sequences too deeply to be walked; it is refused."
            ) from None
        except Exception as exc:
            # The cause is dropped on purpose: pydicom's messages can quote header values.
            if converting_a_value(exc):
                # pydicom could not convert a value it read (a sequence whose items end early, a
                # number too short for its VR, bytes in no character set): the file is damaged.
                raise UnreadableDicomError(
                    f"The element {Tag(walk.tag)} holds a value that cannot be read as its VR "
                    f"({type(exc).__name__}); the file is damaged and is refused. Re-export it "
                    "from the source."
                ) from None
            _log.error("unexpected error while de-identifying (%s)", where(exc))
            raise DeidentificationError(
                f"Could not de-identify the element {Tag(walk.tag)}: {type(exc).__name__}. The "
                "instance is refused; please report it with the log."
            ) from None
        return pseudonym

    def remap_uid(self, uid: str) -> str:
        """Return the project's replacement for a UID (for callers that link instances).

        Parameters
        ----------
        uid : str
            An original UID.

        Returns
        -------
        str
            The keyed ``2.25`` UID, or ``uid`` itself when it is a well-known DICOM UID.
        """
        return self._uids(uid)

    # -- capture ------------------------------------------------------------------------------

    def _capture(
        self, ds: Dataset, tag: BaseTag, raw: DataElement | RawDataElement, vr: str, walk: _Walk
    ) -> None:
        """Add an identifying value to the header terms before its action changes it."""
        key = _capture_key(raw, vr)
        values = self._captured.get(key) if key is not None else None
        if values is None:
            values = _strings(ds[tag].value)
            if isinstance(raw, RawDataElement):
                # Put the raw bytes back: a value kept in the output is then written exactly as
                # read, with no round trip through its character set.
                ds[tag] = raw
            if key is not None:
                if len(self._captured) >= _CAPTURE_CACHE:
                    self._captured.clear()
                self._captured[key] = values
        if vr == "DA":
            for value in values:
                walk.terms.add_date(value)
        else:
            walk.terms.update(values)

    def _patient(self, ds: Dataset) -> tuple[str, str, str]:
        def text(tag: int) -> str:
            elem = ds.get(tag)
            return "" if elem is None or elem.value is None else str(elem.value).strip()

        patient_id, name = text(PATIENT_ID), text(PATIENT_NAME)
        issuer = text(ISSUER_OF_PATIENT_ID)
        if patient_id:
            key = f"id:{issuer}|{patient_id}"
        elif name:
            key = f"name:{name}"
        elif text(STUDY_INSTANCE_UID):
            key = f"study:{text(STUDY_INSTANCE_UID)}"
        else:
            key = "unidentified"
        return key, patient_id, name

    def _shifter(self, patient_key: str) -> DateShifter | None:
        if not self.profile.shifts_dates:
            return None
        if self.config.date_shift_scope is DateShiftScope.PATIENT:
            days = shift_days_from_secret(self._secret, "patient/" + patient_key)
            if self.config.date_shift_days is not None:
                days += self.config.date_shift_days
            return DateShifter(days)
        return DateShifter(self._project_shift)

    # -- the walk -----------------------------------------------------------------------------

    def _walk(self, ds: Dataset, walk: _Walk, depth: int, mode: _Mode) -> None:
        if depth > self.config.max_depth:
            raise DeidentificationError(
                f"The data set nests sequences deeper than {self.config.max_depth} levels; "
                "it is refused."
            )
        private_blocks: dict[tuple[int, int], str] = {}
        removed_overlay_groups: set[int] = set()
        # A nested item that names a patient (a referenced patient, say) gets the same
        # pseudonym that patient's instances get.
        identity = self._patient(ds) if depth > 0 and ds.get(PATIENT_ID) else None
        # File order is tag order, so private creators come before the elements of their block.
        for tag in list(ds.keys()):
            number = walk.tag = int(tag)  # int comparisons: BaseTag.__eq__ is slow Python
            group = number >> 16
            if (
                number & 0xFFFF == 0
                or group in (0x0002, 0xFFFE)
                or number == DATA_SET_TRAILING_PADDING
            ):
                # Group lengths, stray meta or item/delimiter tags and trailing padding are no
                # data: dropping them loses nothing and keeps the writer from tripping on them.
                del ds[tag]
                walk.changes += 1
                continue
            if group & 1:
                if self._retain_safe_private and self._safe_private:
                    self._private(ds, tag, private_blocks, walk)
                else:
                    walk.actions["private"] += 1
                    del ds[tag]
                    walk.changes += 1
                continue
            raw: DataElement | RawDataElement = ds.get_item(tag, keep_deferred=True)
            if isinstance(raw, RawDataElement) and _unknown_vr(raw.VR):
                # A value nothing can interpret, only copy: written back raw it would make the
                # output unreadable to the next reader (the reader refuses it at the top level)
                raise UnreadableDicomError(
                    f"The element {tag} (in a sequence, {depth} level(s) deep) has no valid "
                    "value representation; the file is corrupted. Re-export it from the source."
                )
            vr = element_vr(tag, raw)
            if vr in ("PN", "DA") or number in _IDENTIFYING_TAGS:
                self._capture(ds, tag, raw, vr, walk)
            if number in (ACCESSION_NUMBER, STUDY_ID):
                self._keyed_identifier(ds, tag, walk)
                continue
            action = self.profile.action(number)
            if action is None:
                self._unlisted(ds, tag, vr, walk, depth, mode)
                continue
            if action is Action.REMOVE:
                needed_if = _TYPE2_WHEN_PRESENT.get(keyword_for_tag(tag), ())
                if any(condition in ds for condition in needed_if):
                    action = Action.EMPTY
            if action in (Action.REMOVE, Action.CLEAN) and _is_overlay_data(tag):
                removed_overlay_groups.add(tag.group)
            self._apply(ds, tag, vr, action, walk, depth)
        if identity is not None:
            self._pseudonymise(ds, *identity)
            walk.changes += 1
        for group in removed_overlay_groups:
            # Without its data, the rest of an overlay plane describes nothing: drop the group.
            for tag in [t for t in sorted(ds.keys()) if t.group == group]:
                del ds[tag]
                walk.changes += 1

    def _apply(
        self, ds: Dataset, tag: BaseTag, vr: str, action: Action, walk: _Walk, depth: int
    ) -> None:
        walk.actions[action.value] += 1
        if action is Action.KEEP:
            if vr == "SQ":
                self._walk_items(ds, tag, walk, depth, _Mode.NORMAL)
            return
        if action is Action.REMOVE:
            del ds[tag]
            walk.changes += 1
        elif action is Action.EMPTY:
            ds[tag] = _element(tag, vr, Sequence([]) if vr == "SQ" else None)
            walk.changes += 1
        elif action is Action.UID:
            if vr == "SQ":
                self._walk_items(ds, tag, walk, depth, _Mode.NORMAL)
            else:
                self._remap_uids(ds, tag, vr, walk)
        elif action is Action.DUMMY:
            if vr == "SQ":
                self._walk_items(ds, tag, walk, depth, _Mode.DUMMY)
            elif vr == "UI":
                self._remap_uids(ds, tag, vr, walk)
            else:
                self._dummy(ds, tag, vr, walk)
        else:  # CLEAN
            self._clean(ds, tag, vr, walk, depth)

    def _clean(self, ds: Dataset, tag: BaseTag, vr: str, walk: _Walk, depth: int) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag, walk, depth, _Mode.CLEAN)
        elif vr in ("DA", "DT"):
            self._shift(ds, tag, vr, walk)
        elif vr == "TM" or vr in _NUMERIC_VRS or vr in {"AS", "CS"}:
            return  # times move with whole-day shifts; measurements and codes identify nobody
        elif vr in _TEXT_VRS:
            self._queue_text(ds, tag, walk)
        else:
            # Curves, overlays and binary values: no cleaner for their content in metadata, so
            # the Clean Graphics option removes them (the pixel stage cleans what it renders).
            del ds[tag]
            walk.changes += 1

    def _unlisted(
        self, ds: Dataset, tag: BaseTag, vr: str, walk: _Walk, depth: int, mode: _Mode
    ) -> None:
        if not self.config.strict and mode is _Mode.NORMAL and vr not in _UNLISTED_WORK_VRS:
            return  # the common case: a standard attribute the profile keeps as it is
        keyword = keyword_for_tag(tag)
        if self.config.strict and keyword not in _STRICT_KEEP_KEYWORDS:
            walk.actions["strict"] += 1
            del ds[tag]
            walk.changes += 1
            return
        if vr == "SQ":
            self._walk_items(ds, tag, walk, depth, mode)
        elif vr == "UI":
            if not self._retain_uids and not _names_a_kind(keyword):
                self._remap_uids(ds, tag, vr, walk)
        elif vr == "PN" and mode is not _Mode.DUMMY:
            # A person's name in an attribute the table does not list (newer or niche ones such
            # as Evaluator Name) is emptied: keeping it could only leak.
            walk.actions[Action.EMPTY.value] += 1
            ds[tag] = _element(tag, "PN", None)
            walk.changes += 1
        elif vr in ("DA", "DT"):
            if mode is _Mode.DUMMY and walk.shifter is None:
                self._dummy(ds, tag, vr, walk)
            elif walk.shifter is not None:
                self._shift(ds, tag, vr, walk)
        elif vr in _TEXT_VRS and keyword not in _STRUCTURAL_TEXT_KEYWORDS:
            if mode is _Mode.DUMMY:
                walk.actions[Action.DUMMY.value] += 1
                self._dummy(ds, tag, vr, walk)
            elif mode is _Mode.CLEAN:
                self._queue_text(ds, tag, walk)

    def _walk_items(self, ds: Dataset, tag: BaseTag, walk: _Walk, depth: int, mode: _Mode) -> None:
        raw: DataElement | RawDataElement = ds.get_item(tag, keep_deferred=True)
        before = walk.changes
        items = ds[tag].value
        if items is not None and not isinstance(items, Sequence):
            # pydicom could not parse the items and kept the bytes (as UN): nothing to walk, and
            # nothing that could be written back as a sequence
            raise UnreadableDicomError(
                f"The element {tag} is declared a sequence but its items cannot be read; the "
                "file is damaged and is refused. Re-export it from the source."
            )
        for item in items or []:
            self._walk(item, walk, depth + 1, mode)
        if walk.changes == before and isinstance(raw, RawDataElement):
            # Nothing inside needed a change: write the sequence back exactly as it was read
            # (faster, and byte-identical).
            ds[tag] = raw

    # -- value replacements -------------------------------------------------------------------

    def _remap_uids(self, ds: Dataset, tag: BaseTag, vr: str, walk: _Walk) -> None:
        values = _strings(ds[tag].value)
        new = [self._uids(v) for v in values]
        if new == values:
            return
        walk.actions[Action.UID.value] += 1
        if self.keystore is not None:
            kind = {STUDY_INSTANCE_UID: "study_uid", SERIES_INSTANCE_UID: "series_uid"}.get(
                int(tag), "uid"
            )
            for old, replacement in zip(values, new, strict=True):
                if old.strip(" \x00") and not is_well_known_uid(old.strip(" \x00")):
                    self.keystore.record(kind, old.strip(" \x00"), replacement)
        ds[tag] = _element(tag, "UI", new if len(new) > 1 else (new[0] if new else None))
        walk.changes += 1

    def _dummy(self, ds: Dataset, tag: BaseTag, vr: str, walk: _Walk) -> None:
        if vr in _DUMMY_BY_VR:
            value: object = _DUMMY_BY_VR[vr]
        elif vr in _TEXT_VRS or vr in ("AE", "CS"):
            value = _DUMMY_TEXT
        else:
            value = None  # binary and URI values: no meaningful dummy, so zero length
        ds[tag] = _element(tag, vr, value)
        walk.changes += 1

    def _shift(self, ds: Dataset, tag: BaseTag, vr: str, walk: _Walk) -> None:
        shifter = walk.shifter
        if shifter is None:
            if self.profile.keeps_dates:
                return
            ds[tag] = _element(tag, vr, None)
            walk.changes += 1
            return
        shift = shifter.shift_da if vr == "DA" else shifter.shift_dt
        values = _strings(ds[tag].value)
        shifted = []
        for value in values:
            if not value.strip(" \x00"):
                continue
            try:
                shifted.append(shift(value))
            except UnparsableDateError:
                shifted = []
                walk.actions[Action.EMPTY.value] += 1
                break
        walk.actions["shifted"] += 1
        ds[tag] = _element(
            tag, vr, shifted if len(shifted) > 1 else (shifted[0] if shifted else None)
        )
        walk.changes += 1

    def _queue_text(self, ds: Dataset, tag: BaseTag, walk: _Walk) -> None:
        """Clean this text once the whole header has been seen (names may come later)."""
        walk.pending_text.append((ds, tag))
        walk.changes += 1  # its sequence must not be put back as read

    def _clean_text(self, ds: Dataset, tag: BaseTag, walk: _Walk) -> None:
        if tag not in ds:
            return  # removed after it was queued (with its overlay group, say)
        walk.tag = int(tag)
        elem = ds[tag]
        values = _strings(elem.value)
        cleaned = [walk.terms.clean(v) for v in values]
        if cleaned != values:
            walk.actions[Action.CLEAN.value] += 1
            elem.value = cleaned if len(cleaned) > 1 else cleaned[0]
            walk.changes += 1

    def _keyed_identifier(self, ds: Dataset, tag: BaseTag, walk: _Walk) -> None:
        """Replace an Accession Number or Study ID by a keyed pseudonym (Z allows a dummy).

        The same original maps to the same pseudonym in every file of the project, so studies
        stay linkable; the pseudonym cannot be reversed without the project secret.
        """
        original = "".join(_strings(ds[tag].value)).strip(" \x00")
        if not original:
            ds[tag] = _element(tag, "SH", None)
            walk.changes += 1
            return
        kind = "accession" if tag == ACCESSION_NUMBER else "study_id"
        digest = hmac.new(self._identifier_key, f"{kind}:{original}".encode(), hashlib.sha256)
        replacement = ("A" if tag == ACCESSION_NUMBER else "S") + digest.hexdigest()[:15].upper()
        walk.actions[Action.DUMMY.value] += 1
        if self.keystore is not None and tag == ACCESSION_NUMBER:
            self.keystore.record("accession", original, replacement)
        ds[tag] = _element(tag, "SH", replacement)
        walk.changes += 1

    def _private(
        self,
        ds: Dataset,
        tag: BaseTag,
        blocks: dict[tuple[int, int], str],
        walk: _Walk,
    ) -> None:
        """Keep a private element only if it (or its creator) belongs to a safe block."""
        if 0x0010 <= tag.element <= 0x00FF:
            creator = str(ds[tag].value or "").strip()
            blocks[(tag.group, tag.element)] = creator
            if any(c == creator and g == tag.group for c, g, _ in self._safe_private):
                return
        else:
            creator = blocks.get((tag.group, tag.element >> 8), "")
            if (creator, tag.group, tag.element & 0xFF) in self._safe_private:
                return
        walk.actions["private"] += 1
        del ds[tag]
        walk.changes += 1

    # -- identity and bookkeeping -------------------------------------------------------------

    def _pseudonymise(
        self, ds: Dataset, patient_key: str, original_id: str, original_name: str
    ) -> str:
        if self.keystore is not None:
            index = self.keystore.patient_index(patient_key)
        else:
            index = self._memory_index.setdefault(patient_key, len(self._memory_index) + 1)
        pseudonym = f"{self.config.prefix}_{index:03d}"
        ds[PATIENT_NAME] = _element(Tag(PATIENT_NAME), "PN", pseudonym)
        ds[PATIENT_ID] = _element(Tag(PATIENT_ID), "LO", pseudonym)
        if self.keystore is not None:
            if original_id:
                self.keystore.record("patient_id", original_id, pseudonym)
            if original_name:
                self.keystore.record("patient_name", original_name, pseudonym)
        return pseudonym

    def _mark(self, ds: Dataset, *, pixels_cleaned: bool) -> None:
        """Record the de-identification in the data set (PS3.15 E.1.1, PS3.3 C.7.1.1)."""
        codes = self._codes_with_pixels if pixels_cleaned else self._codes
        previous = ds.get(DEIDENTIFICATION_CODES)
        existing = [
            (str(item.get("CodeValue", "")), str(item.get("CodeMeaning", "")))
            for item in (previous.value if previous is not None else None) or []
        ]
        items = []
        for value, meaning in _unique(existing + codes):
            item = Dataset()
            item[0x00080100] = _element(Tag(0x00080100), "SH", value)
            item[0x00080102] = _element(Tag(0x00080102), "SH", "DCM")
            item[0x00080104] = _element(Tag(0x00080104), "LO", meaning)
            items.append(item)
        methods = [f"scrubber {__version__}"] + [meaning[:64] for _, meaning in codes]
        marks: tuple[tuple[int, str, object], ...] = (
            (PATIENT_IDENTITY_REMOVED, "CS", "YES"),
            (DEIDENTIFICATION_METHOD, "LO", methods),
            (DEIDENTIFICATION_CODES, "SQ", Sequence(items)),
            (LONGITUDINAL_TEMPORAL_MODIFIED, "CS", self._temporal),
        )
        for tag, vr, mark in marks:
            ds[tag] = _element(Tag(tag), vr, mark)

    def _rebuild_file_meta(self, ds: Dataset) -> None:
        old = getattr(ds, "file_meta", None) or FileMetaDataset()
        syntax: str | None = old.get("TransferSyntaxUID")
        if syntax is None:
            implicit, little = getattr(ds, "original_encoding", (True, True))
            if implicit:
                syntax = ImplicitVRLittleEndian
            else:
                syntax = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        # A directory names its SOP class only in the file meta; an instance whose own SOP
        # Instance UID is missing keeps the (remapped) one its meta had.
        sop_class = ds.get("SOPClassUID") or old.get("MediaStorageSOPClassUID")
        sop_instance = ds.get("SOPInstanceUID")
        if not sop_instance and old.get("MediaStorageSOPInstanceUID"):
            sop_instance = self._uids(str(old.MediaStorageSOPInstanceUID))
        meta = FileMetaDataset()
        for tag, vr, value in (
            (0x00020001, "OB", b"\x00\x01"),
            (0x00020002, "UI", str(sop_class) if sop_class else None),
            (0x00020003, "UI", str(sop_instance) if sop_instance else None),
            (0x00020010, "UI", str(syntax)),
            (0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
            (0x00020013, "SH", IMPLEMENTATION_VERSION_NAME),
        ):
            if value is not None:
                meta[tag] = _element(Tag(tag), vr, value)
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128


def _unique(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out = []
    for value, meaning in pairs:
        if value and value not in seen:
            seen.add(value)
            out.append((value, meaning))
    return out


def _is_directory(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop_class = meta.get("MediaStorageSOPClassUID") if meta else None
    return sop_class == MEDIA_STORAGE_DIRECTORY or DIRECTORY_RECORD_SEQUENCE in ds


def _names_a_kind(keyword: str) -> bool:
    """Whether an unlisted UI attribute names a kind of thing rather than an instance."""
    return "Class" in keyword or keyword.endswith(_KIND_UID_SUFFIXES)


def _element(tag: BaseTag, vr: str, value: object) -> DataElement:
    """Make an element for a value scrubber generated (valid by construction: not re-validated).

    An empty value, or one string in a VR pydicom keeps as a plain string, is stored as given:
    what pydicom's conversion would store too, without its cost (about 40 elements a slice).
    """
    plain = value is None and vr != "SQ"
    if isinstance(value, str) and "\\" not in value:
        plain = vr in _PLAIN_STRING_VRS or (
            vr in _DATE_TIME_VRS and not pydicom_config.datetime_conversion
        )
    return DataElement(
        tag, vr, value, validation_mode=pydicom_config.IGNORE, already_converted=plain
    )


#: VRs whose single value pydicom keeps as the string it is given (no type of its own).
_PLAIN_STRING_VRS: Final = frozenset({"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"})
#: Dates and times: plain strings too, unless pydicom's datetime conversion is switched on.
_DATE_TIME_VRS: Final = frozenset({"DA", "DT", "TM"})


def _is_overlay_data(tag: BaseTag) -> bool:
    return 0x6000 <= tag.group <= 0x601E and tag.element == 0x3000
