"""Build a synthetic validation set: fake patients on real images, with an answer key.

The set follows the NCI/TCIA MIDI recipe: images without identifying content, fake patients
inserted in standard and unusual header elements (free text, sequences, private blocks), identifying
text burned into the pixels of a share of the instances at recorded boxes, and an answer key of
what a correct de-identification must do to each element and image (:mod:`.answer_key`).

Images come from the test files that ship inside pydicom (the text-free ones: a CT slice, an MR
slice, a brain CT, a nuclear medicine view, an abdominal MR and a test pattern), from ultrasound
and endoscopy views drawn in code, or from DICOM files the user points at (which must carry no
text of their own: anything already burned in is not in the key).

What the key expects of each header element follows the PS3.15 Annex E profile with the options
the set is built for (:class:`~scrubber.deid.profile.Profile`): kept elements must keep their
text, removed, emptied, dummied and cleaned ones must lose every word of the fake value, dates
must not survive as they were, UIDs must change and agree with the linkage export, and the
Patient ID must be the one the export maps it to. Burned-in text is drawn into the stored values
(every frame of a multi-frame instance, as cine banners are) and each box is checked to be legible
to OCR before it goes into the key, so that a ``pixels_hidden`` pass means something.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from scrubber.deid.profile import DEFAULT_OPTIONS, Action, Profile, ProfileOption
from scrubber.errors import ConfigError
from scrubber.validate.answer_key import Answer, AnswerKey, InstanceAnswers

__all__ = [
    "GENERATOR_VERSION",
    "Background",
    "SynthError",
    "SynthResult",
    "SynthSettings",
    "bundled_backgrounds",
    "load_backgrounds",
    "synthesize",
]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"

_UID_ROOT = "1.2.826.0.1.3680043.10.1172.9."  # a test root; the rest is drawn from the seed

CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.4")
US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
VL_ENDOSCOPIC = UID("1.2.840.10008.5.1.4.1.1.77.1.1")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")

# The text-free test images that ship inside pydicom (checked by eye; others carry text).
_BUNDLED = (
    ("CT_small.dcm", "CT"),
    ("693_J2KI.dcm", "CT"),
    ("MR_small.dcm", "MR"),
    ("examples_overlay.dcm", "MR"),
    ("JPEG2000.dcm", "NM"),
    ("image_dfl.dcm", "OT"),
)

_FAMILY = (
    "Halvorsen",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Ferreira",
    "Kowalski",
    "Novak",
    "Brennan",
    "Castellano",
    "Dubois",
    "Eriksen",
    "Fitzgerald",
    "Gallagher",
    "Haugland",
    "Iversen",
    "Jablonski",
    "Kristiansen",
    "Lombardi",
    "Mbeki",
    "Nakamura",
    "Oyelaran",
    "Petrakis",
    "Quintero",
    "Rasmussen",
    "Solberg",
    "Thorsen",
    "Ulvestad",
    "Vasquez",
    "Whitfield",
    "Yilmaz",
    "Zielinski",
)
_GIVEN = (
    "Ingrid",
    "Chidi",
    "Astrid",
    "Lucien",
    "Haruki",
    "Beatriz",
    "Marek",
    "Vesna",
    "Solveig",
    "Tomasz",
    "Aurelie",
    "Kenji",
    "Margit",
    "Rafael",
    "Oddny",
    "Emeka",
    "Liesel",
    "Dario",
    "Annelise",
    "Bjarne",
    "Carmela",
    "Wojciech",
    "Henrietta",
    "Kwame",
    "Ylva",
    "Matteo",
)
_INSTITUTIONS = (
    "HAUKELAND TEST HOSPITAL",
    "ST FICTIONAL MEDICAL CENTER",
    "CLINIQUE IMAGINAIRE",
    "NORDFJORD DEMO SYKEHUS",
    "RIVERBEND SAMPLE CLINIC",
)
_STREETS = ("Fjellveien", "Harbour Road", "Rue Lepic", "Elm Street", "Sakura-dori", "Kongens gate")
_CITIES = ("Bergen", "Springfield", "Lyon", "Osaka", "Tromso", "Porto")


class SynthError(ConfigError):
    """A validation set cannot be built as asked."""

    reason = "synth"


@dataclass(frozen=True)
class Background:
    """An image to put fake patients on.

    Parameters
    ----------
    name : str
        Where it came from (a file name or a generator; no PHI).
    modality : str
        The modality the synthetic instances get.
    pixels : numpy.ndarray
        Greyscale stored values ``(rows, columns)`` as ``uint16`` (12 bits used), or RGB
        ``(rows, columns, 3)`` as ``uint8``.
    """

    name: str
    modality: str
    pixels: np.ndarray

    @property
    def rgb(self) -> bool:
        """Whether the image is colour."""
        return self.pixels.ndim == 3


@dataclass(frozen=True)
class SynthSettings:
    """What to build.

    Parameters
    ----------
    count : int
        Number of instances.
    seed : int
        Everything is drawn from this seed: the same settings build the same set.
    burn_share : float
        Share of instances with identifying text burned into their pixels.
    multiframe_share : float
        Share of instances that are multi-frame (ultrasound cine, 2 to 4 frames).
    patients : int or None
        Number of fake patients (default: one per eight instances, at least one).
    images : Path or None
        A folder of text-free DICOM images to use besides the bundled ones.
    options : frozenset of ProfileOption
        The profile options the de-identification under test applies (the key follows them).
    check_legible : bool
        Read every burned box with OCR and enlarge it until legible (recommended: a box nobody
        can read proves nothing when it is found hidden).
    """

    count: int = 200
    seed: int = 0
    burn_share: float = 0.3
    multiframe_share: float = 0.1
    patients: int | None = None
    images: Path | None = None
    options: frozenset[ProfileOption] = DEFAULT_OPTIONS
    check_legible: bool = True

    def __post_init__(self) -> None:
        if self.count < 1:
            raise SynthError("--n must be at least 1.")
        for label, share in (
            ("burn share", self.burn_share),
            ("multi-frame share", self.multiframe_share),
        ):
            if not 0.0 <= share <= 1.0:
                raise SynthError(f"The {label} must be between 0 and 1; got {share}.")
        if self.patients is not None and self.patients < 1:
            raise SynthError("--patients must be at least 1.")
        Profile(self.options)  # refuses contradictory options early


@dataclass
class SynthResult:
    """What :func:`synthesize` wrote."""

    input_dir: Path
    key_sqlite: Path
    key_json: Path
    instances: int
    burned: int
    answers: int
    backgrounds: list[str] = field(default_factory=list)


# -- images ---------------------------------------------------------------------------------------


def _normalise_grey(values: np.ndarray, side: int) -> np.ndarray:
    import cv2

    values = values.astype(np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 3800.0
    rows, columns = scaled.shape
    factor = side / max(rows, columns)
    if factor > 1.0:
        size = (round(columns * factor), round(rows * factor))
        scaled = cv2.resize(scaled, size, interpolation=cv2.INTER_CUBIC)
    return np.asarray(np.clip(scaled, 0, 3800) + 0.5, dtype=np.uint16)


def _from_dataset(name: str, modality: str, ds: Dataset, side: int) -> Background | None:
    from scrubber.dicom_io.pixels import describe_pixels, iter_frames
    from scrubber.render import render_frame

    description = describe_pixels(ds)
    frame = next(iter_frames(ds))
    if description.photometric.startswith("MONOCHROME"):
        if description.photometric == "MONOCHROME1":
            frame = frame.max() - frame
        return Background(name, modality, _normalise_grey(frame, side))
    if description.photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR"):
        view = render_frame(frame, ds, description)
        return Background(name, modality, np.ascontiguousarray(view, dtype=np.uint8))
    return None


def bundled_backgrounds(side: int = 512) -> list[Background]:
    """Return the text-free images that ship inside pydicom, plus views drawn in code.

    Parameters
    ----------
    side : int
        Smaller images are enlarged so that their longer side is this long (burned text must be
        readable on them).

    Returns
    -------
    list of Background
    """
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    found: list[Background] = []
    for file_name, modality in _BUNDLED:
        path = get_testdata_file(file_name)
        if path is None:  # pragma: no cover - every pydicom wheel ships these
            continue
        background = _from_dataset(file_name, modality, dcmread(str(path)), side)
        if background is not None:
            found.append(background)
    found.append(Background("drawn-ultrasound", "US", _ultrasound_view(np.random.default_rng(7))))
    found.append(Background("drawn-endoscopy", "ES", _endoscopy_view(np.random.default_rng(11))))
    return found


def load_backgrounds(folder: Path, side: int = 512) -> list[Background]:
    """Read the images of a folder of DICOM files (recursively) as backgrounds.

    Files that are not DICOM, carry no pixels or cannot be decoded are skipped (counted in the
    log). The images must be free of burned-in text: the answer key cannot know about it.

    Parameters
    ----------
    folder : Path
        Where the images are.
    side : int
        Smaller images are enlarged to this longer side.

    Returns
    -------
    list of Background

    Raises
    ------
    SynthError
        If the folder holds no usable image.
    """
    from scrubber.dicom_io import read_instance
    from scrubber.errors import ScrubberError

    if not folder.is_dir():
        raise SynthError(f"{folder}: not a folder. Give a folder of text-free DICOM images.")
    found: list[Background] = []
    skipped = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = read_instance(path)
            if "PixelData" not in ds:
                skipped += 1
                continue
            modality = str(ds.get("Modality", "OT") or "OT")
            background = _from_dataset(path.name, modality, ds, side)
        except (ScrubberError, ValueError, TypeError, KeyError, AttributeError, StopIteration):
            skipped += 1
            continue
        if background is None:
            skipped += 1
        else:
            found.append(background)
    if skipped:
        logger.info("%d file(s) under the images folder were skipped (no usable pixels)", skipped)
    if not found:
        raise SynthError(
            f"{folder}: no decodable DICOM image found. Give a folder of text-free images, or "
            "leave --images out to use the bundled ones."
        )
    return found


def _ultrasound_view(rng: np.random.Generator, rows: int = 480, columns: int = 640) -> np.ndarray:
    import cv2

    view = np.zeros((rows, columns, 3), np.uint8)
    mask = np.zeros((rows, columns), np.uint8)
    cv2.ellipse(mask, (columns // 2, 40), (rows - 60, rows - 60), 90, -38, 38, 255, -1)
    speckle = np.asarray(cv2.GaussianBlur(rng.gamma(1.2, 40.0, (rows, columns)), (0, 0), 1.6))
    depth = np.linspace(1.0, 0.45, rows)[:, None]
    grey = np.clip(speckle * depth, 0, 235).astype(np.uint8)
    grey[mask == 0] = 0
    view[..., 0] = view[..., 1] = view[..., 2] = grey
    return view


def _endoscopy_view(rng: np.random.Generator, rows: int = 480, columns: int = 480) -> np.ndarray:
    import cv2

    base = np.asarray(cv2.GaussianBlur(rng.normal(0.0, 1.0, (rows, columns)), (0, 0), 18))
    base = (base - base.min()) / max(float(np.ptp(base)), 1e-9)
    view = np.zeros((rows, columns, 3), np.float64)
    view[..., 0] = 120 + 110 * base
    view[..., 1] = 50 + 70 * base
    view[..., 2] = 40 + 40 * base
    mask = np.zeros((rows, columns), np.uint8)
    cv2.circle(mask, (columns // 2, rows // 2), int(rows * 0.46), 255, -1)
    view[mask == 0] = 0
    return np.asarray(np.clip(view, 0, 255), dtype=np.uint8)


def _vary(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a slightly different view of a background (a shift and a little noise).

    Each instance then differs, as slices of one series do.
    """
    dy, dx = (int(v) for v in rng.integers(-6, 7, size=2))
    moved = np.roll(pixels, (dy, dx), axis=(0, 1))
    if pixels.dtype == np.uint8:
        noise = rng.normal(0.0, 2.0, moved.shape)
        return np.asarray(np.clip(moved + noise, 0, 255), dtype=np.uint8)
    noise = rng.normal(0.0, 12.0, moved.shape)
    return np.asarray(np.clip(moved + noise, 0, 3800), dtype=np.uint16)


# -- fake people ----------------------------------------------------------------------------------


@dataclass
class _Patient:
    family: str
    given: str
    patient_id: str
    birth_date: str
    sex: str
    address: str
    phone: str
    other_id: str
    institution: str
    physician: str

    @property
    def dicom_name(self) -> str:
        return f"{self.family.upper()}^{self.given.upper()}"


def _patients(count: int, rng: random.Random) -> list[_Patient]:
    people: list[_Patient] = []
    used: set[str] = set()
    while len(people) < count:
        family, given = rng.choice(_FAMILY), rng.choice(_GIVEN)
        if (family, given) in {(p.family, p.given) for p in people} and len(people) < 400:
            continue
        patient_id = str(rng.randrange(10_000_000, 99_999_999))
        if patient_id in used:
            continue
        used.add(patient_id)
        year, month, day = rng.randrange(1935, 2015), rng.randrange(1, 13), rng.randrange(1, 29)
        people.append(
            _Patient(
                family=family,
                given=given,
                patient_id=patient_id,
                birth_date=f"{year:04d}{month:02d}{day:02d}",
                sex=rng.choice("FM"),
                address=f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}",
                phone=f"+47 {rng.randrange(40_000_000, 99_999_999)}",
                other_id=f"H{rng.randrange(100_000, 999_999)}",
                institution=rng.choice(_INSTITUTIONS),
                physician=f"{rng.choice(_FAMILY).upper()}^{rng.choice(_GIVEN).upper()}",
            )
        )
    return people


def _uid(rng: random.Random) -> str:
    return _UID_ROOT + ".".join(str(rng.randrange(1, 10**9)) for _ in range(3))


# -- the answer rules -----------------------------------------------------------------------------


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _words(text: str) -> str:
    """Return the words of a value as the key checks them (``^`` name separators as spaces)."""
    return re.sub(r"\s+", " ", text.replace("^", " ")).strip()


class _Answers:
    """Collects the answers of one instance, deciding each element's by the profile."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.items: list[Answer] = []

    def add(self, **kwargs: object) -> None:
        self.items.append(Answer(**kwargs))  # type: ignore[arg-type]

    def element(
        self,
        tag: int,
        path: str,
        name: str,
        vr: str,
        value: str,
        category: str,
        *,
        private: bool = False,
        phi: str | None = None,
        parent: int | None = None,
    ) -> None:
        """Record what the profile requires of an element that carries ``value``.

        ``phi`` is the identifying part of a longer free text: a removal checks only its words
        (the Clean Descriptors option may rightly keep the rest). ``parent`` is the sequence the
        element is in, when the profile's action for the sequence decides its fate.
        """
        words = _words(value if phi is None else phi)
        action = self.profile.private_action if private else self.profile.action(tag)
        if parent is not None and self.profile.action(parent) in (Action.REMOVE, Action.EMPTY):
            action = Action.REMOVE  # the whole sequence goes: whatever is inside goes with it
        base = {"tag": _tag_text(tag), "tag_ds": path, "tag_name": name, "category": category}
        if tag == 0x00100020:  # Patient ID: the linkage export says what it must become
            self.add(action="patid_consistent", value=value, action_text=value, **base)
            return
        if vr == "UI" and action is Action.REMOVE:
            self.add(action="uid_changed", value=value, action_text=value, **base)
            return
        if vr == "UI" and action is Action.UID and not private:
            self.add(action="uid_changed", value=value, action_text=value, **base)
            self.add(action="uid_consistent", value=value, action_text=value, **base)
            return
        if action is None or action is Action.KEEP:
            self.add(action="text_retained", value=value, action_text=_words(value), **base)
            return
        if vr in ("DA", "DT"):
            self.add(action="date_shifted", value=value, action_text=value, **base)
        elif vr != "TM":  # whole-day shifts keep times: there is nothing to check
            self.add(action="text_removed", value=value, action_text=words, **base)
        if action is Action.DUMMY:
            self.add(action="text_notnull", value=value, action_text="", **base)

    def structure(self, tag: int, name: str, value: str, *, text: bool) -> None:
        """Record an element that identifies nobody and must stay (tag_retained/text_retained)."""
        action = self.profile.action(tag)
        if action not in (None, Action.KEEP):
            return
        base = {"tag": _tag_text(tag), "tag_ds": _tag_text(tag), "tag_name": name}
        if text:
            self.add(
                action="text_retained", value=value, action_text=value, category="structure", **base
            )
        else:
            self.add(
                action="tag_retained", value=value, action_text="", category="structure", **base
            )


# -- burning text ---------------------------------------------------------------------------------


@dataclass
class _Line:
    text: str  # what is drawn
    words: str  # what identifies (checked by pixels_hidden)


def _burn_lines(
    patient: _Patient, study_date: str, accession: str, rng: random.Random
) -> list[_Line]:
    dob = f"{patient.birth_date[6:8]}.{patient.birth_date[4:6]}.{patient.birth_date[:4]}"
    shown_date = f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:8]}"
    lines = [
        _Line(
            f"{patient.family.upper()}, {patient.given.upper()}",
            f"{patient.family} {patient.given}",
        ),
        _Line(f"ID {patient.patient_id}", patient.patient_id),
    ]
    extra = [
        _Line(f"DOB {dob}", dob),
        _Line(f"ACC {accession}", accession),
        _Line(patient.institution, patient.institution),
        _Line(shown_date, shown_date),
    ]
    rng.shuffle(extra)
    return lines + extra[: rng.randrange(0, 3)]


_FONTS = (0, 2, 3)  # cv2.FONT_HERSHEY_SIMPLEX, _DUPLEX, _TRIPLEX


def _draw(
    frames: list[np.ndarray],
    lines: list[_Line],
    rng: random.Random,
    *,
    scale_boost: float,
    backing: bool,
) -> list[tuple[_Line, tuple[int, int, int, int]]]:
    """Draw the lines into every frame (in place) and return each line's box."""
    import cv2

    rows, columns = frames[0].shape[:2]
    font = rng.choice(_FONTS)
    height = max(11.0, min(rows, columns) * rng.uniform(0.026, 0.04)) * scale_boost
    scale = height / 22.0
    thickness = 1 if height < 20 else 2
    corner = rng.choice(("top-left", "top-right", "bottom-left", "bottom-right"))
    widest = max(cv2.getTextSize(line.text, font, scale, thickness)[0][0] for line in lines)
    if widest > columns - 20:  # narrow images: the longest line must fit
        scale *= (columns - 20) / widest
        thickness = 1 if scale * 22.0 < 20 else thickness
    sizes = [cv2.getTextSize(line.text, font, scale, thickness) for line in lines]
    step = int(max(h + b for (_, h), b in sizes) * 1.45) + 2
    block = step * len(lines)
    y0 = 6 + step if corner.startswith("top") else rows - block - 6 + step
    placed: list[tuple[_Line, tuple[int, int, int, int]]] = []
    pad = 3
    for index, (line, ((width, text_height), baseline)) in enumerate(
        zip(lines, sizes, strict=True)
    ):
        x = 8 if corner.endswith("left") else max(2, columns - width - 10)
        y = y0 + index * step
        box = (
            max(0, x - pad),
            max(0, y - text_height - pad),
            min(columns, x + width + pad) - max(0, x - pad),
            min(rows, y + baseline + pad) - max(0, y - text_height - pad),
        )
        mask = np.zeros((rows, columns), np.uint8)
        cv2.putText(mask, line.text, (x, y), font, scale, 255, thickness, cv2.LINE_AA)
        alpha = mask.astype(np.float64) / 255.0
        for frame in frames:
            bx, by, bw, bh = box
            if frame.ndim == 3:
                colour = np.array(rng.choice(((255, 255, 255), (255, 255, 0), (0, 255, 0))), float)
                if backing:
                    frame[by : by + bh, bx : bx + bw] = 0
                blended = frame * (1.0 - alpha[..., None]) + colour * alpha[..., None]
                frame[...] = np.asarray(np.clip(blended + 0.5, 0, 255), dtype=frame.dtype)
            else:
                top = 4095.0
                if backing:
                    frame[by : by + bh, bx : bx + bw] = 0
                blended = frame * (1.0 - alpha) + top * alpha
                frame[...] = np.asarray(np.clip(blended + 0.5, 0, top), dtype=frame.dtype)
        placed.append((line, box))
    return placed


def _view(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3:
        return frame
    return np.asarray(frame.astype(np.float64) / 4095.0 * 255.0 + 0.5, dtype=np.uint8)


# -- building instances ---------------------------------------------------------------------------


@dataclass
class _Plan:
    patient: _Patient
    patient_index: int
    study_index: int
    series_index: int
    instance_number: int
    background: Background
    study_uid: str
    series_uid: str
    frame_of_reference: str
    study_date: str
    accession: str
    study_description: str
    series_number: int
    syntax: str
    frames: int
    burn: bool
    monochrome1: bool


def _plans(
    settings: SynthSettings, backgrounds: list[Background], rng: random.Random
) -> list[_Plan]:
    patients = _patients(settings.patients or max(1, settings.count // 8), rng)
    burn_count = round(settings.count * settings.burn_share)
    burn_flags = [True] * burn_count + [False] * (settings.count - burn_count)
    rng.shuffle(burn_flags)
    multi_count = round(settings.count * settings.multiframe_share)
    multi_flags = [True] * multi_count + [False] * (settings.count - multi_count)
    rng.shuffle(multi_flags)
    ultrasound = [b for b in backgrounds if b.modality == "US"] or [
        Background("drawn-ultrasound", "US", _ultrasound_view(np.random.default_rng(7)))
    ]
    plans: list[_Plan] = []
    index = 0
    series_number = 0
    while index < settings.count:
        p_index = (
            (index // 8) % len(patients)
            if settings.patients is None
            else rng.randrange(len(patients))
        )
        patient = patients[p_index]
        study_uid, accession = _uid(rng), f"A{rng.randrange(1_000_000, 9_999_999)}"
        year = rng.randrange(2012, 2025)
        study_date = f"{year:04d}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        frame_of_reference = _uid(rng)
        study_index = (
            sum(
                1
                for p in plans
                if p.patient_index == p_index and p.instance_number == 1 and p.series_index == 1
            )
            + 1
        )
        for series_index in range(1, rng.randrange(1, 3) + 1):
            series_number += 1
            multi = multi_flags[index] if index < settings.count else False
            background = rng.choice(ultrasound) if multi else rng.choice(backgrounds)
            series_uid = _uid(rng)
            syntax = rng.choices(
                (ExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless),
                weights=(6, 2, 1, 1),
            )[0]
            region = rng.choice(("CHEST", "ABDOMEN", "HEAD", "PELVIS", "NECK"))
            description = f"{background.modality} {region}"
            for number in range(1, rng.randrange(2, 6) + 1):
                if index >= settings.count:
                    break
                plans.append(
                    _Plan(
                        patient=patient,
                        patient_index=p_index,
                        study_index=study_index,
                        series_index=series_index,
                        instance_number=number,
                        background=background,
                        study_uid=study_uid,
                        series_uid=series_uid,
                        frame_of_reference=frame_of_reference,
                        study_date=study_date,
                        accession=accession,
                        study_description=description,
                        series_number=series_number,
                        syntax=syntax,
                        frames=rng.randrange(2, 5) if multi and background.modality == "US" else 1,
                        burn=burn_flags[index],
                        monochrome1=(not background.rgb) and rng.random() < 0.1,
                    )
                )
                index += 1
    return plans


def _sop_class(plan: _Plan) -> UID:
    modality = plan.background.modality
    if modality == "US":
        return US_MULTIFRAME if plan.frames > 1 else US_IMAGE
    if modality == "ES":
        return VL_ENDOSCOPIC
    return {"CT": CT_IMAGE, "MR": MR_IMAGE}.get(modality, SecondaryCaptureImageStorage)


def _header(
    plan: _Plan, rng: random.Random, answers: _Answers, previous_uid: str | None
) -> Dataset:
    """Build the header: the fake patient in standard and unusual places, with answers."""
    patient = plan.patient
    ds = Dataset()
    sop_uid = _uid(rng)
    sop_class = _sop_class(plan)
    series_date = plan.study_date
    time = f"{rng.randrange(7, 19):02d}{rng.randrange(0, 60):02d}{rng.randrange(0, 60):02d}"

    def put(keyword: str, vr: str, value: str, category: str, phi: str | None = None) -> None:
        """Set an element; ``phi`` is the identifying part of a longer text (default: all)."""
        setattr(ds, keyword, value)
        tag = int(Tag(keyword))
        answers.element(tag, _tag_text(tag), ds[tag].name, vr, value, category, phi=phi)

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = (
        ["ORIGINAL", "PRIMARY"] if plan.background.modality != "OT" else ["DERIVED", "SECONDARY"]
    )
    ds.SOPClassUID = sop_class
    put("SOPInstanceUID", "UI", sop_uid, "uid")
    put("StudyDate", "DA", plan.study_date, "date")
    put("SeriesDate", "DA", series_date, "date")
    put("ContentDate", "DA", series_date, "date")
    ds.StudyTime = time
    ds.ContentTime = time
    put("AccessionNumber", "SH", plan.accession, "patient")
    ds.Modality = plan.background.modality
    ds.Manufacturer = "SYNTHETIC IMAGING"
    put("InstitutionName", "LO", patient.institution, "institution")
    put("InstitutionAddress", "ST", patient.address, "institution")
    put("ReferringPhysicianName", "PN", patient.physician, "person")
    put("StationName", "SH", f"{patient.family.upper()[:6]}-WS{rng.randrange(1, 9)}", "equipment")
    put(
        "StudyDescription",
        "LO",
        f"{plan.study_description} FOR {patient.family.upper()}",
        "free_text",
        phi=patient.family,
    )
    put(
        "SeriesDescription",
        "LO",
        f"SERIES {plan.series_number} {patient.given.upper()}",
        "free_text",
        phi=patient.given,
    )
    put(
        "OperatorsName",
        "PN",
        f"{rng.choice(_FAMILY).upper()}^{rng.choice(_GIVEN).upper()}",
        "person",
    )
    put("PatientName", "PN", patient.dicom_name, "patient")
    put("PatientID", "LO", patient.patient_id, "patient")
    put("PatientBirthDate", "DA", patient.birth_date, "patient")
    put("PatientSex", "CS", patient.sex, "patient")
    put("OtherPatientIDs", "LO", patient.other_id, "patient")
    put("PatientAddress", "LO", patient.address, "patient")
    put("PatientTelephoneNumbers", "SH", patient.phone, "patient")
    physician = patient.physician.replace("^", " ")
    put(
        "AdditionalPatientHistory",
        "LT",
        f"Seen by {physician} after a fall at {patient.address}",
        "free_text",
        phi=f"{physician} {patient.address}",
    )
    put(
        "PatientComments",
        "LT",
        f"{patient.given} {patient.family} prefers morning appointments",
        "free_text",
        phi=f"{patient.given} {patient.family}",
    )
    put(
        "DeviceSerialNumber",
        "LO",
        f"SN-{patient.patient_id[-4:]}{rng.randrange(100, 999)}",
        "equipment",
    )
    put("StudyInstanceUID", "UI", plan.study_uid, "uid")
    put("SeriesInstanceUID", "UI", plan.series_uid, "uid")
    ds.StudyID = str(plan.study_index)
    ds.SeriesNumber = plan.series_number
    ds.InstanceNumber = plan.instance_number
    if plan.background.modality in ("CT", "MR"):
        put("FrameOfReferenceUID", "UI", plan.frame_of_reference, "uid")
        ds.PositionReferenceIndicator = ""
    put(
        "ImageComments",
        "LT",
        f"Compare with prior at {patient.institution.title()}",
        "free_text",
        phi=patient.institution,
    )
    put(
        "ReasonForStudy",
        "LO",
        f"Follow-up {patient.family.upper()} {patient.patient_id}",
        "free_text",
        phi=f"{patient.family} {patient.patient_id}",
    )

    # In a sequence: the request, with the reason naming the patient; a referenced study UID.
    request = Dataset()
    request.RequestedProcedureID = f"RP{rng.randrange(10_000, 99_999)}"
    request.ReasonForTheRequestedProcedure = f"Rule out fracture, {patient.given} {patient.family}"
    ds.RequestAttributesSequence = Sequence([request])
    reason_tag = int(Tag("ReasonForTheRequestedProcedure"))
    answers.element(
        reason_tag,
        f"(0040,0275)[0]/{_tag_text(reason_tag)}",
        "Reason for the Requested Procedure",
        "LO",
        request.ReasonForTheRequestedProcedure,
        "sequence",
        phi=f"{patient.given} {patient.family}",
        parent=int(Tag("RequestAttributesSequence")),
    )
    reference = Dataset()
    reference.ReferencedSOPClassUID = STUDY_ROOT_FIND
    reference.ReferencedSOPInstanceUID = _uid(rng)
    ds.ReferencedStudySequence = Sequence([reference])
    ref_tag = int(Tag("ReferencedSOPInstanceUID"))
    answers.element(
        ref_tag,
        f"(0008,1110)[0]/{_tag_text(ref_tag)}",
        "Referenced SOP Instance UID",
        "UI",
        str(reference.ReferencedSOPInstanceUID),
        "sequence",
        parent=int(Tag("ReferencedStudySequence")),
    )
    # A reference the profile keeps (UIDs remapped): an earlier image of the series.
    if previous_uid:
        image = Dataset()
        image.ReferencedSOPClassUID = sop_class
        image.ReferencedSOPInstanceUID = previous_uid
        ds.ReferencedImageSequence = Sequence([image])
        answers.element(
            ref_tag,
            f"(0008,1140)[0]/{_tag_text(ref_tag)}",
            "Referenced SOP Instance UID",
            "UI",
            previous_uid,
            "sequence",
            parent=int(Tag("ReferencedImageSequence")),
        )

    # A private block that repeats the patient (removed unless a safe private block is kept).
    block = ds.private_block(0x0009, "SYNTHETIC PHI 1.0", create=True)
    block.add_new(0x01, "LO", patient.dicom_name)
    block.add_new(0x02, "LO", patient.patient_id)
    for offset, value in ((0x01, patient.dicom_name), (0x02, patient.patient_id)):
        tag = int(block.get_tag(offset))
        answers.element(
            tag, _tag_text(tag), "Private: patient", "LO", value, "private", private=True
        )

    answers.structure(int(Tag("Modality")), "Modality", plan.background.modality, text=True)
    answers.structure(int(Tag("SOPClassUID")), "SOP Class UID", str(sop_class), text=True)
    return ds


def _pixels(ds: Dataset, frames: list[np.ndarray], plan: _Plan) -> None:
    rgb = frames[0].ndim == 3
    rows, columns = frames[0].shape[:2]
    ds.Rows, ds.Columns = rows, columns
    ds.PixelRepresentation = 0
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        data: np.ndarray = np.stack(frames).astype(np.uint8)
    else:
        ds.SamplesPerPixel = 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        stack = np.stack(frames).astype(np.uint16)
        if plan.monochrome1:
            ds.PhotometricInterpretation = "MONOCHROME1"
            stack = np.asarray(4095 - stack, dtype=np.uint16)
        else:
            ds.PhotometricInterpretation = "MONOCHROME2"
        data = np.asarray(stack)
    if plan.frames > 1:
        ds.NumberOfFrames = plan.frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = Tag("FrameTime")
    ds.BurnedInAnnotation = "YES" if plan.burn else "NO"
    ds.PixelData = (data if plan.frames > 1 else data[0]).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False


def _meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SCRUBBER_SYNTH"
    ds.file_meta = meta


OcrReader = Callable[[np.ndarray], str]


def _default_reader() -> OcrReader:
    from scrubber.detect.ocr import load_engine, read_text

    engine = load_engine()

    def read(view: np.ndarray) -> str:
        return " ".join(region.text for region in read_text(engine, view).regions)

    return read


def synthesize(
    out: Path,
    settings: SynthSettings,
    *,
    reader: OcrReader | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthResult:
    """Write a validation set: ``out/input/`` and ``out/answer_key.sqlite`` (+ ``.json``).

    Parameters
    ----------
    out : Path
        The set's folder; ``input/`` in it must not exist yet or be empty.
    settings : SynthSettings
        What to build.
    reader : callable, optional
        OCR of a rendered crop to text, for the legibility check (default: scrubber's OCR).
    progress : callable, optional
        Called with (done, total) after each instance.

    Returns
    -------
    SynthResult

    Raises
    ------
    SynthError
        If ``out/input`` already holds files, or the images folder has no usable image.
    """
    from scrubber.dicom_io.pixels import iter_frames
    from scrubber.validate.score import values_digest

    input_dir = out / "input"
    if input_dir.exists() and any(input_dir.iterdir()):
        raise SynthError(
            f"{input_dir} already holds files. Give an empty or new folder: a validation set is "
            "only sound when its answer key describes every file in it."
        )
    rng = random.Random(settings.seed)
    backgrounds = bundled_backgrounds()
    if settings.images is not None:
        backgrounds += load_backgrounds(settings.images)
    profile = Profile(settings.options)
    if settings.check_legible and reader is None and settings.burn_share > 0:
        reader = _default_reader()
    plans = _plans(settings, backgrounds, rng)
    input_dir.mkdir(parents=True, exist_ok=True)
    instances: list[InstanceAnswers] = []
    np_rng = np.random.default_rng(settings.seed)
    for done, plan in enumerate(plans, start=1):
        answers = _Answers(profile)
        same_series = instances and instances[-1].series_instance_uid == plan.series_uid
        ds = _header(plan, rng, answers, instances[-1].sop_instance_uid if same_series else None)
        frames = [_vary(plan.background.pixels, np_rng) for _ in range(plan.frames)]
        if plan.burn:
            lines = _burn_lines(plan.patient, plan.study_date, plan.accession, rng)
            placed = _legible_draw(frames, lines, rng, reader if settings.check_legible else None)
            for frame_index in range(plan.frames):
                for line, box in placed:
                    answers.add(
                        action="pixels_hidden",
                        tag="(7FE0,0010)",
                        tag_ds="(7FE0,0010)",
                        tag_name="Pixel Data",
                        value=line.words,
                        action_text=line.words,
                        frame=frame_index,
                        box=box,
                        category="pixels",
                    )
        _pixels(ds, frames, plan)
        _meta(ds)
        if plan.syntax != ExplicitVRLittleEndian:
            ds.compress(plan.syntax, encoding_plugin="", generate_instance_uid=False)
        relative = (
            f"P{plan.patient_index + 1:04d}/ST{plan.study_index:02d}/"
            f"SE{plan.series_number:04d}/IM{plan.instance_number:04d}.dcm"
        )
        target = input_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        if not plan.burn:
            from pydicom import dcmread

            written = dcmread(target)
            for frame_index, frame in enumerate(iter_frames(written)):
                answers.add(
                    action="pixels_retained",
                    tag="(7FE0,0010)",
                    tag_ds="(7FE0,0010)",
                    tag_name="Pixel Data",
                    action_text=values_digest(frame),
                    frame=frame_index,
                    category="pixels",
                )
        answers.structure(int(Tag("Rows")), "Rows", str(ds.Rows), text=False)
        answers.structure(int(Tag("Columns")), "Columns", str(ds.Columns), text=False)
        instances.append(
            InstanceAnswers(
                sop_instance_uid=str(ds.SOPInstanceUID),
                series_instance_uid=plan.series_uid,
                study_instance_uid=plan.study_uid,
                patient_id=plan.patient.patient_id,
                modality=plan.background.modality,
                file_path=relative,
                frames=plan.frames,
                burned_in=plan.burn,
                answers=answers.items,
            )
        )
        if progress is not None:
            progress(done, len(plans))
    key = AnswerKey(
        instances,
        {
            "generator": f"scrubber synth {GENERATOR_VERSION}",
            "seed": str(settings.seed),
            "count": str(settings.count),
            "burn_share": str(settings.burn_share),
            "multiframe_share": str(settings.multiframe_share),
            "options": ",".join(sorted(o.value for o in settings.options)),
            "input": "input",
            "legibility_checked": str(settings.check_legible).lower(),
        },
    )
    key_sqlite, key_json = out / "answer_key.sqlite", out / "answer_key.json"
    key.write(key_sqlite, key_json)
    return SynthResult(
        input_dir=input_dir,
        key_sqlite=key_sqlite,
        key_json=key_json,
        instances=len(instances),
        burned=sum(1 for i in instances if i.burned_in),
        answers=key.count(),
        backgrounds=[b.name for b in backgrounds],
    )


def _legible_draw(
    frames: list[np.ndarray],
    lines: list[_Line],
    rng: random.Random,
    reader: OcrReader | None,
) -> list[tuple[_Line, tuple[int, int, int, int]]]:
    """Draw the lines, enlarging them (then backing them with black) until OCR reads each."""
    from scrubber.validate.score import box_view, token_legible

    originals = [f.copy() for f in frames]
    attempts = ((1.0, False), (1.4, False), (1.4, True), (1.9, True))
    placed: list[tuple[_Line, tuple[int, int, int, int]]] = []
    for boost, backing in attempts:
        for frame, original in zip(frames, originals, strict=True):
            frame[...] = original
        state = rng.getstate()
        placed = _draw(frames, lines, rng, scale_boost=boost, backing=backing)
        if reader is None:
            return placed
        view = _view(frames[0])
        if all(
            all(token_legible(word, [reader(box_view(view, box))]) for word in line.words.split())
            for line, box in placed
        ):
            return placed
        rng.setstate(state)
    raise SynthError(
        "Burned-in text stayed illegible to OCR even when enlarged on a black band; the image "
        "is unsuitable. Leave it out of --images."
    )
