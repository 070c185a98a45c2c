"""Metadata de-identification over a file or a folder tree (``scrubber deid``).

The job plans every input first (by content, not by extension), mirrors input paths under the
output folder, and de-identifies one file at a time. A file that fails is recorded with a typed
reason and the job goes on; outputs are written atomically, so a failed or interrupted file leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from scrubber.deid import Deidentifier, DirectoryFileError
from scrubber.dicom_io import (
    commit_instance,
    looks_like_dicom,
    read_instance,
    stage_instance,
    write_instance,
)
from scrubber.errors import ConfigError, ScrubberError

__all__ = [
    "DeidJob",
    "FileOutcome",
    "FileStatus",
    "deidentify_file",
    "iter_files",
    "mirror_plan",
    "resolve_destination",
]


class FileStatus(StrEnum):
    """What happened to one input file."""

    DEIDENTIFIED = "deidentified"
    SKIPPED = "skipped"  # not DICOM by content, or a DICOMDIR; left out of the output
    FAILED = "failed"


@dataclass(frozen=True)
class FileOutcome:
    """The result for one input (paths and reasons only: no PHI).

    Attributes
    ----------
    input : Path
        The input file.
    output : Path or None
        The file written, if any.
    status : FileStatus
        What happened.
    reason : str or None
        Machine-readable reason for a skip or failure.
    message : str or None
        Human-readable explanation (never quotes header values).
    seconds : float
        Wall time spent on the file.
    """

    input: Path
    output: Path | None
    status: FileStatus
    reason: str | None = None
    message: str | None = None
    seconds: float = 0.0


def iter_files(root: Path) -> Iterator[Path]:
    """Yield every regular file under ``root`` in sorted order (a file root yields itself).

    Parameters
    ----------
    root : Path
        A file or a directory.

    Yields
    ------
    Path
        Files, depth first, names sorted; hidden temporary files of scrubber's own are skipped.
    """
    if root.is_file():
        yield root
        return
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            path = Path(directory) / name
            if path.is_file():
                yield path


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def deidentify_file(deidentifier: Deidentifier, source: Path, target: Path) -> None:
    """Read ``source``, de-identify it and write it atomically to ``target``.

    Parameters
    ----------
    deidentifier : Deidentifier
        The configured de-identifier.
    source : Path
        The input file.
    target : Path
        The output file (its directory is created if needed).

    Raises
    ------
    ScrubberError
        A typed error when the file cannot be read, de-identified or written; nothing is left at
        ``target`` then.
    """
    dataset = read_instance(source)
    deidentifier.deidentify(dataset)
    write_instance(dataset, target)


def mirror_plan(source: Path, destination: Path) -> list[tuple[Path, Path]]:
    """List ``(input, output)`` pairs, the output tree mirroring the input tree.

    Parameters
    ----------
    source : Path
        An input file or folder.
    destination : Path
        The output file (file input) or folder, from :func:`resolve_destination`.

    Returns
    -------
    list of tuple of (Path, Path)
        One pair per input file, sorted.
    """
    if source.is_file():
        return [(source, destination)]
    return [(path, destination / path.relative_to(source)) for path in iter_files(source)]


def resolve_destination(source: Path, destination: Path, protected: list[Path]) -> Path:
    """Check an input/output pair and return the output path to use.

    Parameters
    ----------
    source : Path
        An input file or folder.
    destination : Path
        The output file or folder; an existing folder given for a file input receives the file
        under its own name.
    protected : list of Path
        Files that must not end up inside the output tree, or in the output file's folder (the
        re-identification key).

    Returns
    -------
    Path
        The output file (file input) or folder (folder input).

    Raises
    ------
    ConfigError
        If the input is missing, the output overlaps the input, or a protected file would sit
        inside the output.
    """
    if not source.exists():
        raise ConfigError(f"The input {source} does not exist; give a file or a folder.")
    if source.is_file() and destination.is_dir():
        destination = destination / source.name
    if source.is_dir():
        if destination.exists() and not destination.is_dir():
            raise ConfigError(
                f"The input is a folder but the output {destination} is a file; "
                "give an output folder."
            )
        if _inside(destination, source) or _inside(source, destination):
            raise ConfigError(
                "The output folder overlaps the input folder; choose an output outside the "
                "input so that originals are never overwritten or re-read."
            )
    elif destination.resolve() == source.resolve():
        raise ConfigError("The output file is the input file; choose another output path.")
    for path in protected:
        if (
            _inside(path, destination)
            if source.is_dir()
            else path.resolve().parent == destination.resolve().parent
        ):
            out_root = destination if source.is_dir() else destination.parent
            raise ConfigError(
                f"The re-identification key {path} would sit inside the output {out_root}; "
                "keep it apart (choose another --key-file)."
            )
    return destination


class DeidJob:
    """De-identify a file or a folder tree into an output location.

    Parameters
    ----------
    deidentifier : Deidentifier
        The configured de-identifier.
    source : Path
        An input file or folder.
    destination : Path
        The output file (for a file input) or folder (mirrors the input tree).
    protected : list of Path, optional
        Files that must not end up inside the output (the re-identification key).

    Raises
    ------
    ConfigError
        If the input is missing, the output overlaps the input, or a protected file would sit
        inside the output.
    """

    def __init__(
        self,
        deidentifier: Deidentifier,
        source: Path,
        destination: Path,
        protected: list[Path] | None = None,
    ) -> None:
        self.deidentifier = deidentifier
        self.source = Path(source)
        self.destination = resolve_destination(self.source, Path(destination), protected or [])

    def plan(self) -> list[tuple[Path, Path]]:
        """List ``(input, output)`` pairs, mirroring the input tree.

        Returns
        -------
        list of tuple of (Path, Path)
            One pair per input file, sorted.
        """
        return mirror_plan(self.source, self.destination)

    def run_one(self, source: Path, target: Path) -> FileOutcome:
        """De-identify one file and write its output before returning.

        Parameters
        ----------
        source : Path
            The input file.
        target : Path
            Where its output goes.

        Returns
        -------
        FileOutcome
            What happened; errors are caught, typed and described, never raised.
        """
        outcome, staged = self._stage(source, target)
        return outcome if staged is None else _commit(outcome, staged)

    def run(self, plan: Iterable[tuple[Path, Path]]) -> Iterator[FileOutcome]:
        """De-identify every ``(input, output)`` pair, yielding outcomes in plan order.

        Each output is flushed to disk and renamed into place on a background thread while the
        next file is de-identified, so waiting for the disk overlaps with work. An outcome is
        yielded only once its file is in place.

        Parameters
        ----------
        plan : iterable of tuple of (Path, Path)
            Pairs from :meth:`plan`.

        Yields
        ------
        FileOutcome
            One per pair, in order.
        """
        pending: deque[tuple[Future[FileOutcome] | None, FileOutcome, Path | None]] = deque()
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scrubber-commit")
        try:
            for source, target in plan:
                outcome, staged = self._stage(source, target)
                future = None if staged is None else committer.submit(_commit, outcome, staged)
                pending.append((future, outcome, staged))
                while pending and (
                    len(pending) > _MAX_PENDING or pending[0][0] is None or pending[0][0].done()
                ):
                    yield _settle(pending.popleft())
            while pending:
                yield _settle(pending.popleft())
        finally:
            # Stopped early: staged files whose commit has not started are withdrawn (a commit
            # already running completes); no temporary file is left behind either way.
            for future, _outcome, staged in pending:
                if future is not None and future.cancel() and staged is not None:
                    with contextlib.suppress(OSError):
                        staged.unlink()
            committer.shutdown(wait=True)

    def _stage(self, source: Path, target: Path) -> tuple[FileOutcome, Path | None]:
        """Read, de-identify and encode to a temporary file; return the outcome so far."""
        start = time.perf_counter()
        if not looks_like_dicom(source):
            return (
                FileOutcome(
                    source,
                    None,
                    FileStatus.SKIPPED,
                    "not_dicom",
                    "not DICOM by content; left out of the output",
                    time.perf_counter() - start,
                ),
                None,
            )
        try:
            dataset = read_instance(source)
            self.deidentifier.deidentify(dataset)
            staged = stage_instance(dataset, target)
        except DirectoryFileError as exc:
            status, reason, message = FileStatus.SKIPPED, exc.reason, str(exc)
        except ScrubberError as exc:
            status, reason, message = FileStatus.FAILED, exc.reason, str(exc)
        except Exception as exc:  # a bug must not take the batch down, nor print values
            status, reason = FileStatus.FAILED, "internal_error"
            message = (
                f"unexpected {type(exc).__name__} while de-identifying this file; please report "
                "it (the message is withheld because it may quote header values)"
            )
        else:
            outcome = FileOutcome(
                source, target, FileStatus.DEIDENTIFIED, seconds=time.perf_counter() - start
            )
            return outcome, staged
        return FileOutcome(source, None, status, reason, message, time.perf_counter() - start), None


_MAX_PENDING = 16


def _commit(outcome: FileOutcome, staged: Path) -> FileOutcome:
    """Flush and rename a staged output; a failure turns the outcome into a failure."""
    start = time.perf_counter()
    target = outcome.output
    if target is None:  # only de-identified outcomes are staged
        raise ValueError("a staged file needs an output path")
    try:
        commit_instance(staged, target)
    except ScrubberError as exc:
        return replace(
            outcome,
            output=None,
            status=FileStatus.FAILED,
            reason=exc.reason,
            message=str(exc),
        )
    return replace(outcome, seconds=outcome.seconds + time.perf_counter() - start)


def _settle(entry: tuple[Future[FileOutcome] | None, FileOutcome, Path | None]) -> FileOutcome:
    future, outcome, _staged = entry
    return outcome if future is None else future.result()
