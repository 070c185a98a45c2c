"""A compressed frame whose own header claims another image is refused before any decoder runs.

Before this check a 64 x 64 JPEG-LS frame whose header claimed 60,000 x 60,000 pixels kept a
worker busy for six minutes and took 13.8 GB before the decoder gave up (JPEG 2000: 33 s, 3.8 GB).
"""

from __future__ import annotations

import resource
import struct
import time
from io import BytesIO

import cv2
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

from scrubber.dicom_io.codestream import DeclaredImage, declared_image
from scrubber.dicom_io.pixels import UndecodablePixelsError, iter_frames
from scrubber.samples import build_instance, sample_patients


def _instance(frames: int = 1, samples: int = 1) -> Dataset:
    ds = build_instance(sample_patients(1, seed=3)[0], modality="OT", series="codestream")
    ds.Rows, ds.Columns = 48, 64
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            del ds[keyword]
    if frames > 1:
        ds.NumberOfFrames = frames
    values = np.arange(frames * 48 * 64 * samples) % 251
    ds.PixelData = values.astype(np.uint8).tobytes()
    return ds


def _frames(ds: Dataset) -> list[bytes]:
    from pydicom.encaps import generate_frames

    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


def _reread(ds: Dataset) -> Dataset:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return dcmread(BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless])
def test_encoders_output_declares_the_instance_size(syntax: str) -> None:
    ds = _instance()
    ds.compress(syntax)
    (frame,) = _frames(ds)
    assert declared_image(frame) == DeclaredImage(rows=48, columns=64, components=1)


def test_a_jfif_jpeg_is_parsed_past_its_app_segments() -> None:
    image = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 200).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok and encoded.tobytes()[2:4] == b"\xff\xe0"  # APP0 (JFIF) before the frame header
    assert declared_image(encoded.tobytes()) == DeclaredImage(48, 64, 3)


def test_a_jp2_wrapped_codestream_is_found_in_its_box() -> None:
    ds = _instance()
    ds.compress(JPEG2000Lossless)
    (codestream,) = _frames(ds)
    signature = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    ftyp = struct.pack(">I4s4sI4s", 20, b"ftyp", b"jp2 ", 0, b"jp2 ")
    wrapped = signature + ftyp + struct.pack(">I4s", 8 + len(codestream), b"jp2c") + codestream
    assert declared_image(wrapped) == DeclaredImage(48, 64, 1)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"\xff\xd8\xff\xc0\x00", b"\xff\x4f\xff\x51\x00", b"RLE data", b"\x00" * 64],
    ids=["empty", "soi-only", "cut-sof", "cut-siz", "other", "zeros"],
)
def test_unparsable_or_foreign_bytes_declare_nothing(data: bytes) -> None:
    assert declared_image(data) is None


def test_rle_frames_are_not_checked() -> None:
    ds = _instance()
    ds.compress(RLELossless)
    (frame,) = _frames(ds)
    assert declared_image(frame) is None
    assert next(iter_frames(_reread(ds))).shape == (48, 64)


def _claiming(ds: Dataset, frame_index: int, side: int) -> Dataset:
    """Patch one frame's header to claim a ``side`` x ``side`` image."""
    frames = [bytearray(f) for f in _frames(ds)]
    frame = frames[frame_index]
    siz = frame.find(b"\xff\x51")
    if frame.startswith(b"\xff\x4f") and siz == 2:
        struct.pack_into(">IIIIII", frame, siz + 6, side, side, 0, 0, side, side)
    else:
        sof = frame.find(b"\xff\xf7")
        struct.pack_into(">HH", frame, sof + 5, side, side)
    ds.PixelData = encapsulate([bytes(f) for f in frames])
    return _reread(ds)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless])
def test_a_frame_claiming_a_huge_image_is_refused_without_decoding(syntax: str) -> None:
    ds = _instance()
    ds.compress(syntax)
    bomb = _claiming(ds, 0, 60000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    with pytest.raises(UndecodablePixelsError, match="60000 x 60000") as caught:
        next(iter_frames(bomb))
    assert time.process_time() - started < 5  # refused, not decoded: the decoder took minutes
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    assert "64 x 48" in str(caught.value)


def test_only_the_frames_asked_for_are_checked() -> None:
    ds = _instance(frames=3)
    ds.compress(JPEG2000Lossless)
    bad_third = _claiming(ds, 2, 60000)
    assert [f.shape for f in iter_frames(bad_third, indices=[0, 1])] == [(48, 64)] * 2
    with pytest.raises(UndecodablePixelsError, match="Frame 3"):
        list(iter_frames(bad_third))


def test_a_colour_frame_claiming_fewer_samples_is_refused() -> None:
    image = (np.arange(48 * 64) % 200).astype(np.uint8).reshape(48, 64)
    ok, encoded = cv2.imencode(".jpg", image)  # one component
    assert ok
    ds = _instance(samples=3)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([encoded.tobytes()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    with pytest.raises(UndecodablePixelsError, match="1 sample"):
        next(iter_frames(_reread(ds)))


def test_a_baseline_jpeg_of_the_right_size_decodes() -> None:
    image = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 200).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    ds = _instance(samples=3)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([encoded.tobytes()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    assert next(iter_frames(_reread(ds))).shape == (48, 64, 3)


def test_a_jpeg_whose_height_comes_later_is_left_to_the_decoder() -> None:
    """Height 0 in the frame header means a DNL marker gives it later: not a claim to refuse."""
    image = (np.arange(48 * 64) % 200).astype(np.uint8).reshape(48, 64)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    data = bytearray(encoded.tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">H", data, sof + 5, 0)
    assert declared_image(bytes(data)) == DeclaredImage(rows=0, columns=64, components=1)
