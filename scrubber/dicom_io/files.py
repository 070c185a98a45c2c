"""Reading DICOM instances defensively and writing them atomically.

Reading accepts Part 10 files and, when they parse into a plausible data set, bare data sets without
a preamble or file meta (ACR-NEMA era and "headless" exports). Everything else ends in a typed
:class:`~scrubber.errors.InputError` whose message names the file, not its content.

Writing goes to a temporary file in the target directory, is flushed to disk, and is renamed over
the final name only when complete: a crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO, Final, cast

import pydicom
from pydicom import config as pydicom_config
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import (
    correct_ambiguous_vr,
    write_data_element,
    write_dataset,
    write_file_meta_info,
)
from pydicom.tag import tag_in_exception
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from scrubber.errors import NotDicomError, OutputError, UnreadableDicomError

__all__ = [
    "UnencodableDatasetError",
    "commit_instance",
    "looks_like_dicom",
    "looks_like_dicom_head",
    "read_instance",
    "stage_instance",
    "write_instance",
]

# pydicom's validation warnings quote header values; they must never reach a log.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

UNDEFINED_LENGTH = 0xFFFFFFFF


class UnencodableDatasetError(OutputError):
    """The data set cannot be encoded in its transfer syntax (a property of the instance).

    Unlike the other :class:`~scrubber.errors.OutputError` cases (disk full, read-only folder),
    trying again later would fail the same way.
    """

    reason = "unencodable"


def looks_like_dicom(path: Path) -> bool:
    """Tell cheaply whether a file is worth parsing as DICOM.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    bool
        ``True`` for a ``DICM`` preamble, or a file that starts with a plausible group 0002 or
        0008 element (a data set without file meta).
    """
    try:
        with path.open("rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return looks_like_dicom_head(head)


def looks_like_dicom_head(head: bytes) -> bool:
    """:func:`looks_like_dicom` on a file's content (its first 132 bytes are enough).

    Parameters
    ----------
    head : bytes
        The start of the file (or all of it).

    Returns
    -------
    bool
        As :func:`looks_like_dicom`.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    group_be = int.from_bytes(head[0:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def read_instance(
    path: Path, *, stop_before_pixels: bool = False, data: bytes | None = None
) -> Dataset:
    """Read one DICOM instance.

    Parameters
    ----------
    path : Path
        The file to read.
    stop_before_pixels : bool, optional
        Stop before PixelData (for header-only work).
    data : bytes, optional
        The file's content, already read by the caller (a batch worker reads a file once, for
        its digest and its parse); ``path`` then only names it.

    Returns
    -------
    Dataset
        The parsed data set, values not yet converted (raw bytes stay raw until used).

    Raises
    ------
    NotDicomError
        If the file is not DICOM.
    UnreadableDicomError
        If it is DICOM but cannot be parsed (truncated, absurd lengths, too deeply nested).
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise NotDicomError(f"{path} is not a regular file; give a DICOM file.")
    if not (looks_like_dicom(path) if data is None else looks_like_dicom_head(data[:132])):
        raise NotDicomError(
            f"{path} is not DICOM: it has neither a DICM preamble nor a leading DICOM element."
        )

    def source() -> Path | _NamedBytes:
        return path if data is None else _NamedBytes(data, str(path))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                ds = pydicom.dcmread(source(), stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                ds = pydicom.dcmread(source(), force=True, stop_before_pixels=stop_before_pixels)
                _check_headless(path, ds)
            if not ds.keys():
                raise UnreadableDicomError(
                    f"{path} has a DICOM header but no data set after it (an empty or cut-off "
                    "file). Re-export it from the source."
                )
            _check_complete(path, ds)
            _drop_stray_delimiters(ds)
            _check_vrs(ds)
        except (NotDicomError, UnreadableDicomError):
            raise
        except RecursionError:
            raise UnreadableDicomError(
                f"{path} nests sequences too deeply to be parsed; it is refused."
            ) from None
        except Exception as exc:  # untrusted input: any parser failure means "unreadable"
            # The cause is dropped on purpose: parser messages can quote header values.
            raise UnreadableDicomError(
                f"{path} looks like DICOM but cannot be parsed ({type(exc).__name__}): it is "
                "truncated or malformed. Re-export it from the source, or quarantine it."
            ) from None
    return ds


class _NamedBytes(io.BytesIO):
    """A file's content in memory, under the file's name (pydicom records it as the filename)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


_KNOWN_VRS: Final = frozenset(vr.value for vr in VR)


def _check_vrs(ds: Dataset) -> None:
    """Refuse a data set whose file meta or top level holds an element of an unknown VR.

    pydicom converts raw values when they are first used, and an element whose VR is not a DICOM
    VR (a corrupted file) raises ``NotImplementedError`` then, deep in whatever uses it first.
    Found by the fuzzer (in the pixel module and in the file meta): such a file is unreadable, not
    an internal error of the pipeline. Only the VR codes are checked, which costs nothing; an
    unknown VR inside a sequence is refused the same way when the de-identifier walks it.
    """
    meta = getattr(ds, "file_meta", None)
    for data in (meta, ds):
        if data is None:
            continue
        for element in data._dict.values():
            unknown = element.VR is not None and element.VR not in _KNOWN_VRS
            if isinstance(element, RawDataElement) and unknown:
                raise UnreadableDicomError(
                    f"The element {element.tag} has no valid value representation; the file is "
                    "corrupted. Re-export it from the source, or quarantine it."
                )


def _drop_stray_delimiters(ds: Dataset) -> None:
    """Remove item and sequence delimiters found among a data set's elements.

    Group FFFE marks the structure of sequences and encapsulated values; a writer that leaves one
    at data set level (seen in real ultrasound exports) makes pydicom keep it as an element of
    unknown VR, which nothing can convert or write. It carries no data.
    """
    for tag in [t for t in ds.keys() if t.group == 0xFFFE]:
        del ds[tag]


def _check_headless(path: Path, ds: Dataset) -> None:
    """Accept a data set read without file meta only if it looks like a real one."""
    tags = list(ds.keys())
    if not tags:
        raise NotDicomError(f"{path} is not DICOM: no data elements could be read.")
    public = [t for t in tags if not t.is_private]
    plausible = sum(
        1 for t in public if t.group in (0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x7FE0)
    )
    if plausible < 2 or tags[0].group > 0x0010:
        raise NotDicomError(
            f"{path} is not DICOM: without a DICM preamble its content does not parse into a "
            "plausible data set."
        )


def _check_complete(path: Path, ds: Dataset) -> None:
    """Refuse a data set whose last element is shorter than its declared length.

    pydicom returns what it could read of an element cut off by the end of the file (a truncated
    transfer, or a corrupted length): everything the file should have held after it is silently
    missing, so the file is treated as unreadable rather than passed on incomplete.
    """
    for tag in reversed(list(ds.keys())):
        if tag.group == 0xFFFE:
            continue  # stray item delimiters carry no value (the de-identifier drops them)
        raw: DataElement | RawDataElement = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH:
            value = raw.value
            if value is not None and len(value) < raw.length:
                raise UnreadableDicomError(
                    f"{path} looks like DICOM but is truncated: element {tag} declares "
                    f"{raw.length} bytes and the file ends after {len(value)}. Re-export it "
                    "from the source, or quarantine it."
                )
        return  # only the last element can run past the end of the file


def write_instance(ds: Dataset, path: Path, *, sync_directory: bool = False) -> None:
    """Write ``ds`` to ``path`` atomically (temporary file, flush to disk, rename).

    The content is on disk before the rename, so a crash leaves the old file or the complete new
    one, never a partial one. This is :func:`stage_instance` followed by
    :func:`commit_instance`; batch jobs call the two apart so that the flush of one file overlaps
    the work on the next.

    A data set with SOP Class and SOP Instance UIDs is written as a DICOM Part 10 file with the
    transfer syntax of its file meta; one without them is written in its original encoding.

    Parameters
    ----------
    ds : Dataset
        The data set to write (with ``file_meta`` set).
    path : Path
        The final file name; its directory is created if needed.
    sync_directory : bool, optional
        Also make the rename durable before returning (for callers that record the write
        elsewhere, such as a ledger).

    Raises
    ------
    OutputError
        If the directory cannot be created or the file cannot be written; no partial file is left.
    """
    commit_instance(stage_instance(ds, path), path, sync_directory=sync_directory)


def stage_instance(ds: Dataset, path: Path) -> Path:
    """Encode ``ds`` into a hidden temporary file beside ``path`` and return its name.

    Nothing is visible under ``path`` until :func:`commit_instance` renames the file into place.

    Parameters
    ----------
    ds : Dataset
        The data set to write (with ``file_meta`` set).
    path : Path
        The final file name; its directory is created if needed.

    Returns
    -------
    Path
        The temporary file (``.<name>.<random>.tmp`` in the same directory).

    Raises
    ------
    UnencodableDatasetError
        If the data set cannot be encoded (an :class:`~scrubber.errors.OutputError`); the
        temporary file is removed then.
    OutputError
        If the directory or file cannot be created or written (disk full, no permission); the
        temporary file is removed then.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"Cannot create {path.parent} or a file in it ({exc.strerror or type(exc).__name__}); "
            "check the output location and its permissions."
        ) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _encode(fp, ds)
    except OSError as exc:
        raise _write_failed(path, tmp, exc) from exc
    except Exception as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UnencodableDatasetError(
            f"Cannot encode the data set for {path} ({type(exc).__name__}); nothing was written."
        ) from None  # encoder messages can quote values
    return tmp


def flush_file(path: Path) -> None:
    """Force a written file's data to disk (``fdatasync``) before it is renamed into place.

    Parameters
    ----------
    path : Path
        The file.

    Raises
    ------
    OSError
        If the file cannot be opened or flushed.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def commit_instance(tmp: Path, path: Path, *, sync_directory: bool = False) -> None:
    """Flush a staged file to disk and rename it to ``path``.

    Parameters
    ----------
    tmp : Path
        The file :func:`stage_instance` returned.
    path : Path
        The final file name.
    sync_directory : bool, optional
        Also make the rename durable before returning.

    Raises
    ------
    OutputError
        If the flush or the rename fails; the temporary file is removed then.
    """
    try:
        flush_file(tmp)
        os.replace(tmp, path)
        if sync_directory:
            _fsync_dir(path.parent)
    except OSError as exc:
        raise _write_failed(path, tmp, exc) from exc


def _write_failed(path: Path, tmp: Path, exc: OSError) -> OutputError:
    """Remove the temporary file and describe the failure."""
    with contextlib.suppress(OSError):
        tmp.unlink()
    return OutputError(
        f"Cannot write {path} ({exc.strerror or type(exc).__name__}); check free space and "
        "permissions. Nothing was left behind."
    )


def _encode(fp: BinaryIO, ds: Dataset) -> None:
    """Encode ``ds`` into ``fp`` in the transfer syntax its file meta names.

    * File meta complete and a syntax pydicom knows: a standard Part 10 file.
    * An uncompressed syntax and no SOP instance to name in the meta (ACR-NEMA era data sets):
      the bare data set, as it came.
    * Otherwise (compressed pixels, or a syntax newer than pydicom): preamble, file meta with what
      is known, and the body in the encoding it was read in, so the pixels keep their syntax.
    """
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = UID(str(meta.TransferSyntaxUID)) if "TransferSyntaxUID" in meta else None
    known = syntax is not None and syntax.is_transfer_syntax
    if known and syntax is not None:
        implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    else:
        implicit = True if ds.original_encoding[0] is None else ds.original_encoding[0]
        little = True if ds.original_encoding[1] is None else ds.original_encoding[1]
    if not implicit and _fill_missing_vrs(ds):
        correct_ambiguous_vr(ds, little)  # "OB or OW", "US or SS" settled as dcmwrite would
    complete = bool(meta.get("MediaStorageSOPClassUID")) and bool(
        meta.get("MediaStorageSOPInstanceUID")
    )
    if known and complete and syntax == DeflatedExplicitVRLittleEndian:
        pydicom.dcmwrite(fp, ds, enforce_file_format=True)  # pydicom deflates the body
        return
    if known and complete:
        # What dcmwrite(enforce_file_format=True) does, without its deep copy of the meta.
        _write_part10(fp, ds, meta, implicit, little, enforce=True)
        return
    if syntax is None or (known and not syntax.is_compressed):
        ds.file_meta = FileMetaDataset()
        ds.preamble = None
        pydicom.dcmwrite(fp, ds, implicit_vr=implicit, little_endian=little)
        return
    meta.FileMetaInformationGroupLength = 0  # recomputed by the writer
    _write_part10(fp, ds, meta, implicit, little, enforce=False)


def _write_part10(
    fp: BinaryIO, ds: Dataset, meta: FileMetaDataset, implicit: bool, little: bool, *, enforce: bool
) -> None:
    out = DicomFileLike(fp)
    out.write(getattr(ds, "preamble", None) or b"\x00" * 128)
    out.write(b"DICM")
    write_file_meta_info(out, meta, enforce_standard=enforce)
    out.is_implicit_VR, out.is_little_endian = implicit, little
    write_body(out, ds)


#: Explicit VR little endian element headers: tag, VR and a 2-byte length, or tag, VR, two
#: reserved bytes and a 4-byte length (PS3.5 7.1.2).
_SHORT_HEADER: Final = struct.Struct("<HH2sH")
_LONG_HEADER: Final = struct.Struct("<HH2sHL")
_NO_CHARSET: Final = object()


def write_body(fp: DicomFileLike, ds: Dataset) -> None:
    """Encode ``ds`` into ``fp`` exactly as pydicom's ``write_dataset`` does, faster.

    When a data set read as explicit VR little endian is written in the same encoding and
    character set, pydicom copies the value of every element still raw (not read since) as it
    was read; this writes those elements' headers and values directly, without pydicom's
    per-element set-up (a quarter of the encoding time of a CT slice's 80 elements). Every
    other element, and every other data set, goes through pydicom's writer: the bytes are the
    same either way.

    Parameters
    ----------
    fp : DicomFileLike
        The output, with ``is_implicit_VR`` and ``is_little_endian`` set.
    ds : Dataset
        The data set.
    """
    encoding = (fp.is_implicit_VR, fp.is_little_endian)
    charset_kept = getattr(ds, "original_character_set", _NO_CHARSET) == getattr(
        ds, "_character_set", None
    )
    same = encoding == (False, True) and ds.original_encoding == encoding and charset_kept
    if not same:  # pydicom re-encodes every element then: nothing is copied
        write_dataset(fp, ds)
        return
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    write = fp.write
    for tag in sorted(ds.keys()):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem: DataElement | RawDataElement = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and _copied_as_read(elem):
            value = cast(bytes, elem.value)
            vr = cast(str, elem.VR).encode()
            if elem.VR in EXPLICIT_VR_LENGTH_32:
                write(_LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, vr, 0, len(value)))
            else:
                write(_SHORT_HEADER.pack(tag >> 16, tag & 0xFFFF, vr, len(value)))
            write(value)
            continue
        with tag_in_exception(tag):
            write_data_element(fp, elem, encodings)


def _copied_as_read(elem: RawDataElement) -> bool:
    """Whether pydicom would write ``elem`` as its header and the bytes it was read with."""
    value = elem.value
    return (
        isinstance(value, bytes)
        and not elem.is_implicit_VR
        and elem.is_little_endian
        and elem.VR is not None
        and len(elem.VR) == 2
        and elem.length != UNDEFINED_LENGTH
        and (elem.VR in EXPLICIT_VR_LENGTH_32 or len(value) <= 0xFFFF)
    )


def _fill_missing_vrs(ds: Dataset) -> bool:
    """Convert raw elements read without a VR (implicit bodies, even under explicit syntaxes).

    Conversion looks the VR up in the data dictionary (``UN`` for unknown tags), so that the writer
    can encode the element explicitly. Raw elements that have a VR are left raw. Returns whether
    any element was converted.
    """
    converted = False
    for tag in list(ds.keys()):
        elem: DataElement | RawDataElement = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            if elem.VR:
                continue  # written back as read
            elem = ds[tag]  # item access converts, looking the VR up
            converted = True
        if elem.VR == "SQ":
            for item in elem.value or []:
                converted = _fill_missing_vrs(item) or converted
    return converted


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
