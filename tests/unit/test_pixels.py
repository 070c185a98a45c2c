"""Decoding frames as stored values, and the 8-bit render, across syntaxes and photometrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from scrubber.dicom_io import read_instance, write_instance
from scrubber.dicom_io.pixels import (
    MAX_FRAME_BYTES,
    UndecodablePixelsError,
    UnsupportedPixelsError,
    describe_pixels,
    iter_frames,
)
from scrubber.render import render_frame
from scrubber.samples import build_image
from tests.pixel_matrix import J2K_SKIP, KINDS, SYNTAXES, encodable, kind_id, syntax_id


@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
@pytest.mark.parametrize("syntax", SYNTAXES, ids=syntax_id)
def test_every_frame_decodes_to_the_stored_values(
    tmp_path: Path, syntax: str, kind: tuple[str, int, bool, int], frames: int
) -> None:
    photometric, bits, signed, planar = kind
    if not encodable(syntax, kind):
        pytest.skip(J2K_SKIP)
    ds, values = build_image(
        photometric=photometric,
        bits_stored=bits,
        signed=signed,
        frames=frames,
        planar_configuration=planar,
        transfer_syntax=syntax,
    )
    write_instance(ds, tmp_path / "image.dcm")
    read = read_instance(tmp_path / "image.dcm")
    description = describe_pixels(read)
    assert (description.frames, description.rows, description.columns) == values.shape[:3]
    assert description.compressed == (syntax in (RLELossless, JPEG2000Lossless, JPEGLSLossless))
    assert not description.lossy
    decoded = list(iter_frames(read))
    assert len(decoded) == frames
    for index, frame in enumerate(decoded):
        np.testing.assert_array_equal(frame, values[index])
        view = render_frame(frame, read, description)
        assert view.dtype == np.uint8
        assert view.shape == (
            values.shape[1:3]
            if photometric.startswith("MONO")
            else (
                *values.shape[1:3],
                3,
            )
        )
    last = next(iter_frames(read, indices=[frames - 1]))
    np.testing.assert_array_equal(last, values[-1])


def test_render_shows_text_bright_on_monochrome2_and_inverts_monochrome1() -> None:
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        ds, values = build_image(photometric=photometric, bits_stored=12)
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        description = describe_pixels(ds)
        view = render_frame(values[0], ds, description)
        block = view[2:10, 2:28]  # the bright "text" block image_values draws
        if photometric == "MONOCHROME2":
            assert block.min() == 255 and view[:, 0].max() < 20
        else:
            assert block.max() == 0 and view[30:, 0].min() > 235


def test_render_colour_conversions() -> None:
    ds, values = build_image(photometric="YBR_FULL", bits_stored=8)
    frame = values[0].copy()
    frame[...] = (76, 85, 255)  # pure red in YBR_FULL (ITU-R BT.601 full range)
    rgb = render_frame(frame, ds, describe_pixels(ds))
    assert tuple(int(c) for c in rgb[0, 0]) in {(254, 0, 0), (255, 0, 0), (254, 0, 1), (255, 0, 1)}
    ds, values = build_image(photometric="PALETTE COLOR", bits_stored=8)
    indices = values[0].copy()
    indices[0, 0] = 10
    rgb = render_frame(indices, ds, describe_pixels(ds))
    assert tuple(int(c) for c in rgb[0, 0]) == (10, 245, 10)  # red and blue ramps, green reversed
    assert rgb.shape == (*values.shape[1:3], 3)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"BitsStored": 20}, "Bits Allocated/Bits Stored"),
        ({"HighBit": 3}, "High Bit"),
        ({"PhotometricInterpretation": "CMYK"}, "Photometric"),
        ({"SamplesPerPixel": 3}, "Samples per Pixel"),
        ({"Rows": 0}, "positive"),
    ],
)
def test_inconsistent_descriptions_are_refused(change: dict[str, object], reason: str) -> None:
    ds, _values = build_image()
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    with pytest.raises(UnsupportedPixelsError, match=reason) as caught:
        describe_pixels(ds)
    assert caught.value.reason == "unsupported_pixels"


def test_absurd_frames_are_refused_before_decoding() -> None:
    ds, _values = build_image()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 10
    with pytest.raises(UnsupportedPixelsError, match=str(MAX_FRAME_BYTES)):
        list(iter_frames(ds))


def test_damaged_compressed_frames_raise_a_typed_error(tmp_path: Path) -> None:
    ds, _values = build_image(transfer_syntax=JPEG2000Lossless)
    write_instance(ds, tmp_path / "ok.dcm")
    data = bytearray((tmp_path / "ok.dcm").read_bytes())
    start = data.index(b"\xff\x4f\xff\x51")  # JPEG 2000 codestream
    data[start + 40 : start + 400] = b"\x00" * 360
    (tmp_path / "bad.dcm").write_bytes(bytes(data))
    with pytest.raises(UndecodablePixelsError) as caught:
        list(iter_frames(read_instance(tmp_path / "bad.dcm")))
    assert caught.value.reason == "undecodable"


def test_data_sets_without_file_meta_get_their_syntax(tmp_path: Path) -> None:
    ds, values = build_image(transfer_syntax=ImplicitVRLittleEndian)
    ds.file_meta = type(ds.file_meta)()
    ds.set_original_encoding(True, True, ds.original_character_set)
    np.testing.assert_array_equal(next(iter_frames(ds)), values[0])
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_big_endian_palette_renders_like_little_endian(tmp_path: Path) -> None:
    """pydicom reads 16-bit palette data in machine order; render swaps big-endian tables."""
    views = []
    for syntax in (ExplicitVRLittleEndian, ExplicitVRBigEndian):
        ds, values = build_image(photometric="PALETTE COLOR", bits_stored=8, transfer_syntax=syntax)
        write_instance(ds, tmp_path / "palette.dcm")
        ds = read_instance(tmp_path / "palette.dcm")
        frame = next(iter(iter_frames(ds)))
        views.append(render_frame(frame, ds, describe_pixels(ds)))
        # rendering leaves the data set as it was: a second render gives the same view
        assert np.array_equal(render_frame(frame, ds, describe_pixels(ds)), views[-1])
    assert np.array_equal(views[0], views[1])
    # red follows the index: entry k holds k * 256 + k // 2, which is k in 8 bits
    assert np.array_equal(views[1][..., 0], values[0].astype(np.uint8))


@pytest.mark.parametrize(
    ("dtype", "rescale", "window"),
    [
        (np.uint16, None, (2048, 4096)),
        (np.uint16, ("1", "-1024"), (40, 400)),
        (np.int16, ("2.5", "-1000.25"), None),
        (np.int16, ("-1", "0"), (0.5, 1)),  # negative slope; a window one value wide
        (np.uint8, None, None),
        (np.int8, ("0", "7"), None),  # a flat rescale: every value the same
        (np.uint16, ("1\\2", "0"), (100, 50)),  # a two-valued slope pydicom refuses: raw values
    ],
)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_rendering_through_a_lookup_table_gives_the_same_bytes_as_the_arithmetic(
    dtype: type,
    rescale: tuple[str, str] | None,
    window: tuple[float, float] | None,
    photometric: str,
) -> None:
    """The table route (every stored value at once) and the direct route (every pixel) agree."""
    from pydicom.dataset import Dataset

    from scrubber import render

    ds = Dataset()
    ds.PhotometricInterpretation = photometric
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    frame: np.ndarray = rng.integers(info.min, info.max, size=(40, 50), endpoint=True).astype(dtype)
    frame[0, :3] = (info.min, info.max, 0)
    description = SimpleNamespace(photometric=photometric)
    render._tables.clear()
    tabled = render._greyscale(frame, ds, description)  # type: ignore[arg-type]
    assert render._tables  # the table route was taken
    direct = render._to_view(render._modality(frame, ds), render._window(ds), description)  # type: ignore[arg-type]
    np.testing.assert_array_equal(tabled, direct)
    assert tabled.dtype == np.uint8
    narrow: np.ndarray = (frame // 4).astype(
        dtype
    )  # another range: without a window, another table
    again = render._greyscale(narrow, ds, description)  # type: ignore[arg-type]
    expected = render._to_view(render._modality(narrow, ds), render._window(ds), description)  # type: ignore[arg-type]
    np.testing.assert_array_equal(again, expected)


def test_a_modality_lut_sequence_renders_without_a_table() -> None:
    from pydicom.dataset import Dataset

    from scrubber import render

    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.LUTData = [10, 20, 30, 250]
    ds.ModalityLUTSequence = [item]
    frame = np.array([[0, 1, 2, 3]], np.uint8)
    render._tables.clear()
    view = render._greyscale(frame, ds, SimpleNamespace(photometric="MONOCHROME2"))  # type: ignore[arg-type]
    assert not render._tables
    assert view.tolist() == [[0, 11, 21, 255]]


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize(
    ("allocated", "stored", "signed"),
    [(8, 8, False), (8, 6, True), (16, 16, True), (16, 12, False), (16, 12, True), (16, 10, True)],
)
@pytest.mark.parametrize("keep_unused_bits", [False, True])
def test_native_frames_match_pydicoms_decoder_bit_for_bit(
    syntax: UID, allocated: int, stored: int, signed: bool, keep_unused_bits: bool
) -> None:
    """Uncompressed greyscale frames are sliced directly; the arrays must be pydicom's own."""
    from pydicom.pixels.utils import iter_pixels

    ds, _ = build_image(photometric="MONOCHROME2", bits_stored=8, frames=3)
    rng = np.random.default_rng(allocated * 100 + stored)
    rows, columns = 7, 5  # odd: 8-bit frames are not a whole number of words
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, stored, stored - 1
    ds.PixelRepresentation = int(signed)
    ds.file_meta.TransferSyntaxUID = syntax
    # every bit random, the unused high ones included: their correction is what may differ
    raw = rng.integers(0, 256, 3 * rows * columns * allocated // 8, dtype=np.uint8).tobytes()
    ds.PixelData = raw + b"\x00" * (len(raw) % 2)
    description = describe_pixels(ds)
    for indices in (None, [2, 0]):
        ours = list(iter_frames(ds, indices=indices, keep_unused_bits=keep_unused_bits))
        theirs = list(
            iter_pixels(ds, indices=indices, raw=True, correct_unused_bits=not keep_unused_bits)
        )
        assert len(ours) == len(theirs) == (3 if indices is None else 2)
        for mine, pydicoms in zip(ours, theirs, strict=True):
            assert mine.dtype == pydicoms.dtype
            assert mine.shape == pydicoms.shape == (rows, columns)
            np.testing.assert_array_equal(mine, pydicoms)
            assert mine.flags.writeable  # redaction paints into frames
    if stored < allocated and not keep_unused_bits:  # the correction really happened
        frame = next(iter_frames(ds))
        top = 1 << (stored - 1)
        assert int(frame.max()) < (top if signed else 2 * top)
    # one byte short of the last frame: pydicom's decoder reports the damage
    ds.PixelData = raw[: description.frame_bytes * 3 - 2]
    with pytest.raises(UndecodablePixelsError):
        list(iter_frames(ds))
