"""Routing: thresholds, header flags that force OCR, and the routing table."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from scrubber.detect import (
    HEADER_FLAGS,
    UNCERTAIN_SCORE_REASON,
    FrameRoute,
    Thresholds,
    expects_text,
    header_flags,
    route_frame,
)
from scrubber.errors import ConfigError
from scrubber.samples import build_instance, sample_patients

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
T = Thresholds(0.2, 0.8)


def plain_ct() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BurnedInAnnotation = "NO"
    return ds


# ---- Thresholds -------------------------------------------------------------------------------


@pytest.mark.parametrize(("low", "high"), [(0.0, 0.0), (0.0, 1.0), (0.3, 0.3), (0.1, 0.9), (0, 1)])
def test_valid_thresholds(low: float, high: float) -> None:
    thresholds = Thresholds(low, high)
    assert isinstance(thresholds.low, float)
    assert isinstance(thresholds.high, float)
    assert (thresholds.low, thresholds.high) == (low, high)


@pytest.mark.parametrize(
    ("low", "high"),
    [(0.9, 0.1), (-0.1, 0.5), (0.2, 1.1), (math.nan, 0.5), (0.1, math.nan), (0.1, math.inf)],
)
def test_invalid_thresholds_are_config_errors(low: float, high: float) -> None:
    with pytest.raises(ConfigError, match="0 <= low <= high <= 1"):
        Thresholds(low, high)


@pytest.mark.parametrize("bad", ["0.5", None, True])
def test_thresholds_must_be_numbers(bad: Any) -> None:
    with pytest.raises(ConfigError, match="not a number"):
        Thresholds(bad, 0.9)


# ---- routing table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "flags", "route"),
    [
        (0.0, (), FrameRoute.CLEAN),
        (0.1999, (), FrameRoute.CLEAN),
        (0.2, (), FrameRoute.OCR),  # low itself is not "below low"
        (0.5, (), FrameRoute.OCR),
        (0.8, (), FrameRoute.OCR),
        (1.0, (), FrameRoute.OCR),
        (0.0, ("ultrasound",), FrameRoute.OCR),
        (0.1, ("burned_in_annotation",), FrameRoute.OCR),
        (0.9, ("secondary_capture",), FrameRoute.OCR),
        (math.nan, (), FrameRoute.OCR),  # a broken model fails closed
    ],
)
def test_routing_table(score: float, flags: tuple[str, ...], route: FrameRoute) -> None:
    assert route_frame(score, flags, T) is route


def test_flags_may_be_any_iterable() -> None:
    assert route_frame(0.0, iter(["ultrasound"]), T) is FrameRoute.OCR
    assert route_frame(0.0, iter([]), T) is FrameRoute.CLEAN
    assert route_frame(0.0, [], T) is FrameRoute.CLEAN


def test_zero_thresholds_send_everything_to_ocr() -> None:
    assert route_frame(0.0, (), Thresholds(0.0, 0.0)) is FrameRoute.OCR
    assert expects_text(0.0, Thresholds(0.0, 0.0))


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.0, False), (0.5, False), (0.7999, False), (0.8, True), (1.0, True), (math.nan, True)],
)
def test_expects_text_from_high_up(score: float, expected: bool) -> None:
    assert expects_text(score, T) is expected


def test_route_values_and_reason_are_stable_slugs() -> None:
    assert FrameRoute.CLEAN.value == str(FrameRoute.CLEAN) == "clean"
    assert FrameRoute.OCR.value == str(FrameRoute.OCR) == "ocr"
    assert UNCERTAIN_SCORE_REASON == "uncertain_score"


# ---- header flags ---------------------------------------------------------------------------


def test_a_plain_ct_has_no_flag() -> None:
    assert header_flags(plain_ct()) == ()
    assert header_flags(Dataset()) == ()


def test_sample_ct_instance_has_no_flag() -> None:
    ds = build_instance(sample_patients(1, seed=3)[0], modality="CT")
    assert header_flags(ds) == ()


def test_sample_us_instance_is_ultrasound() -> None:
    ds = build_instance(sample_patients(1, seed=3)[0], modality="US")
    assert "ultrasound" in header_flags(ds)


def _with(**attributes: Any) -> Dataset:
    ds = plain_ct()
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


CASES: list[tuple[str, Dataset]] = [
    ("burned_in_annotation", _with(BurnedInAnnotation="YES")),
    ("burned_in_annotation", _with(BurnedInAnnotation="yes ")),
    ("secondary_capture", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.7")),
    ("secondary_capture", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.1")),
    ("secondary_capture", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.2")),
    ("secondary_capture", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.3")),
    ("secondary_capture", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.4")),
    ("converted_image", _with(ConversionType="WSD")),
    ("converted_image", _with(ConversionType="SD")),
    ("converted_image", _with(ConversionType="SI")),
    ("converted_image", _with(ConversionType="DV")),
    ("converted_image", _with(ConversionType="DF")),
    ("ultrasound", _with(Modality="US")),
    ("ultrasound", _with(Modality="IVUS")),
    ("ultrasound", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1")),
    ("ultrasound", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.6.2")),
    ("ultrasound", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.3.1")),
    ("ultrasound", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.6")),  # retired
    ("ultrasound", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.3")),  # retired
    ("ultrasound", _with(Modality="OT", SequenceOfUltrasoundRegions=[Dataset()])),
    ("visible_light", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.1")),  # endoscopic
    ("visible_light", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.5.1")),  # ophthalmic
    ("visible_light", _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.6")),  # whole slide
    ("visible_light", _with(Modality="ES")),
    ("visible_light", _with(Modality="XC")),
    ("visible_light", _with(Modality="GM")),
    ("visible_light", _with(Modality="OP")),
    ("visible_light", _with(Modality="SM")),
    ("screen_capture", _with(ImageType=["DERIVED", "PRIMARY", "SCREEN SAVE"])),
    ("screen_capture", _with(ImageType=["ORIGINAL", "PRIMARY", "SCREENSHOT"])),
    ("screen_capture", _with(ImageType=["ORIGINAL", "PRIMARY", "SCREEN_CAPTURE"])),
    ("screen_capture", _with(ImageType=["ORIGINAL", "PRIMARY", "SNAPSHOT"])),
    ("report_image", _with(ImageType=["ORIGINAL", "PRIMARY", "OTHER", "CSA REPORT"])),
    ("report_image", _with(ImageType=["ORIGINAL", "PRIMARY", "DOSE_INFO"])),
    ("report_image", _with(ImageType=["ORIGINAL", "PRIMARY", "PATIENT PROTOCOL"])),
    ("derived_secondary", _with(ImageType=["DERIVED", "SECONDARY", "REFORMATTED"])),
    ("derived_secondary", _with(ImageType=["ORIGINAL", "SECONDARY"])),
    ("colour_render", _with(PhotometricInterpretation="RGB")),
    ("colour_render", _with(Modality="PT", PhotometricInterpretation="YBR_FULL_422")),
]


@pytest.mark.parametrize(
    ("flag", "ds"), CASES, ids=[f"{flag}-{i}" for i, (flag, _) in enumerate(CASES)]
)
def test_each_flag(flag: str, ds: Dataset) -> None:
    flags = header_flags(ds)
    assert flags == (flag,)
    assert route_frame(0.0, flags, T) is FrameRoute.OCR


def test_every_flag_is_documented_and_tested() -> None:
    tested = {flag for flag, _ in CASES} | {"unreadable_header"}
    assert tested == set(HEADER_FLAGS)
    from scrubber.detect import routing

    assert routing.__doc__ is not None
    for flag in HEADER_FLAGS:
        assert f"``{flag}``" in routing.__doc__


@pytest.mark.parametrize(
    "ds",
    [
        _with(BurnedInAnnotation="NO"),
        _with(BurnedInAnnotation=None),
        _with(ImageType=["ORIGINAL", "PRIMARY", "SCREENING"]),  # a word, not a substring
        _with(ImageType=["DERIVED", "PRIMARY", "MPR"]),
        _with(ImageType="ORIGINAL"),
        _with(Modality="MR", PhotometricInterpretation="MONOCHROME1"),
        _with(Modality="NM", PhotometricInterpretation="PALETTE COLOR"),
        _with(Modality="OT", PhotometricInterpretation="RGB"),  # colour from an unknown source
        _with(ConversionType=""),
        _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.77.10"),  # not under 77.1
        _with(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.5"),  # not a secondary capture class
    ],
)
def test_look_alikes_raise_no_flag(ds: Dataset) -> None:
    assert header_flags(ds) == ()


def test_media_storage_sop_class_counts_too() -> None:
    ds = plain_ct()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    assert header_flags(ds) == ("secondary_capture",)


def test_flags_come_in_a_stable_order() -> None:
    ds = _with(
        BurnedInAnnotation="YES",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.7",
        ConversionType="WSD",
        Modality="US",
        ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE", "DOSE REPORT"],
        PhotometricInterpretation="RGB",
    )
    assert header_flags(ds) == (
        "burned_in_annotation",
        "secondary_capture",
        "converted_image",
        "ultrasound",
        "screen_capture",
        "report_image",
        "derived_secondary",
    )
    ds.Modality = "CT"
    assert header_flags(ds)[-1] == "colour_render"
    assert list(header_flags(ds)) == [f for f in HEADER_FLAGS if f in header_flags(ds)]


class _Broken(Dataset):
    """A data set whose Image Type cannot be parsed (as a malformed file would)."""

    def get(self, key: Any, default: Any = None) -> Any:
        if key == "ImageType":
            raise ValueError("malformed")
        return super().get(key, default)


def test_an_unparseable_attribute_fails_closed() -> None:
    ds = _Broken()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    assert header_flags(ds) == ("unreadable_header",)
    assert route_frame(0.0, header_flags(ds), T) is FrameRoute.OCR


def test_flags_name_reasons_never_values() -> None:
    ds = _with(BurnedInAnnotation="YES", ImageType=["DERIVED", "SECONDARY", "DOE^JANE"])
    assert all(flag in HEADER_FLAGS for flag in header_flags(ds))
