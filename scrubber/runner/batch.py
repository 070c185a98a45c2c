"""The batch run (``scrubber run``): a whole tree through the pipeline, resumable, on every core.

The driver process owns the ledger and every rename; worker processes own the work. For each
input a worker reads it, runs :func:`scrubber.pipeline.scrub_instance`, and *stages* what the
input produces under hidden temporary names, flushed to disk: the de-identified instance in the
output tree, or the original, its note and its preview in the quarantine. The driver then
records the final paths in the ledger (``committing``), renames the temporaries into place, and
records the outcome (``done``). Killing the run at any moment therefore leaves, per input, either
nothing under a final name or a ledger row that says which final names to remove; the next run
removes them, sweeps the temporaries and processes those inputs again, while inputs already done
(same size and modification time) are skipped.

On CPU, workers scale to the usable cores with one inference thread each (two single-threaded
workers beat one two-threaded worker on the classifier and on OCR), each with its own models.
On a GPU (``--device cuda``, or ``auto`` where ONNX Runtime offers CUDA) the models live in one
inference process per GPU instead (:mod:`scrubber.runner.inference`): the CPU workers decode,
render and reduce frames, and that process scores the frames of all of them in shared batches
and reads their text (``inference="shared"``; ``"worker"`` keeps the models in every worker).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib
import json
import logging
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydicom.dataset import Dataset

from scrubber.deid import DeidConfig, Deidentifier, KeyStore
from scrubber.detect.classifier import Manifest
from scrubber.detect.ocr import DeferredEngine, check_engine
from scrubber.dicom_io import flush_file, looks_like_dicom, read_instance, stage_instance
from scrubber.dicom_io.files import UnencodableDatasetError, looks_like_dicom_head
from scrubber.errors import ConfigError, OutputError, ScrubberError
from scrubber.pipeline import InstanceResult, Outcome, QuarantineReason, ScrubConfig, scrub_instance
from scrubber.runner.deid_job import _inside, iter_files
from scrubber.runner.inference import (
    InferenceServer,
    InferenceStats,
    RemoteClassifier,
    RemoteEngine,
    connect,
    gpu_devices,
)
from scrubber.runner.ledger import Ledger, LedgerError, LedgerRow
from scrubber.runner.quarantine import (
    commit_staged,
    discard_staged,
    make_private_dirs,
    stage_quarantine,
)

__all__ = [
    "BatchRun",
    "RayWorker",
    "RunSettings",
    "RunSummary",
    "RunnerError",
    "Task",
    "WorkResult",
    "process",
    "uid_layout_path",
    "versions",
]

_log = logging.getLogger(__name__)


class RunnerError(ScrubberError):
    """The batch run cannot go on (a worker died); what is done stays done."""

    reason = "runner"


Layout = Literal["mirror", "uids"]
#: Where the models run: in every worker, or in one shared inference process per GPU.
Inference = Literal["worker", "shared"]
#: Outcomes a row can end with; ``skipped`` is a file that is not DICOM by content, ``rejected``
#: a held input a reviewer rejected, ``failed`` an input whose files could not be written (it is
#: not recorded as done, so the next run tries it again).
OUTCOMES: Final = ("clean", "scrubbed", "quarantined", "skipped", "rejected", "failed")


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs to process inputs the same way (picklable).

    Attributes
    ----------
    source : Path
        The input file or folder.
    out : Path
        The output folder.
    quarantine : Path
        The quarantine folder.
    layout : {"mirror", "uids"}
        ``mirror``: outputs at the input's relative path; ``uids``: at
        ``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` of the de-identified UIDs.
    deid : DeidConfig
        Metadata de-identification settings.
    secret : bytes
        The project secret.
    key_path : Path or None
        The re-identification key store (``None``: keep no key).
    policy : str
        ``all`` or ``phi``.
    ocr : str
        OCR engine name.
    model_dir : Path or None
        Classifier folder.
    device : {"auto", "cpu", "cuda"}
        Where the classifier runs.
    threads : int
        Inference threads per worker.
    inference : {"worker", "shared"}
        ``worker``: every worker loads the models; ``shared``: one inference process per GPU
        (one in all on the CPU) holds them and serves every worker
        (:mod:`scrubber.runner.inference`). Outputs are the same either way.
    """

    source: Path
    out: Path
    quarantine: Path
    layout: Layout
    deid: DeidConfig
    secret: bytes = field(repr=False)
    key_path: Path | None
    policy: str = "all"
    ocr: str = "rapidocr"
    model_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 1
    inference: Inference = "worker"


@dataclass(frozen=True)
class Task:
    """One input: its name relative to the input root, its path, size and modification time."""

    name: str
    path: Path
    size: int
    mtime_ns: int


@dataclass
class WorkResult:
    """What a worker made of one input (no PHI; the staged files are hidden temporaries)."""

    name: str
    outcome: str
    reasons: list[str]
    output: str | None
    staged: list[tuple[Path, Path]]
    digest: str | None
    frames: int = 0
    ocr_frames: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    #: Staged temporaries not yet flushed to disk: the driver flushes them before the rename.
    unflushed: list[Path] = field(default_factory=list)


@dataclass
class RunSummary:
    """Counts and rates of one run (inputs done in this run, and the whole ledger)."""

    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    ocr_frames: int = 0
    stage_seconds: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    already_done: int = 0
    ledger_counts: Counter[str] = field(default_factory=Counter)
    #: Figures of the shared inference processes (empty when the workers hold the models).
    inference: list[InferenceStats] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data (frames per second per stage included)."""
        files = sum(self.counts.values())
        return {
            "files": files,
            "already_done": self.already_done,
            "counts": dict(self.counts),
            "reasons": dict(self.reasons),
            "frames": self.frames,
            "ocr_frames": self.ocr_frames,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(files / self.seconds, 3) if self.seconds else None,
            "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds else None,
            "stage_seconds": {k: round(v, 3) for k, v in sorted(self.stage_seconds.items())},
            "stage_frames_per_second": {
                stage: round(self.frames / total, 1)
                for stage, total in sorted(self.stage_seconds.items())
                if total > 0
            },
            "ledger_counts": dict(self.ledger_counts),
            "inference": [stats.as_dict() for stats in self.inference],
        }


# ---------------------------------------------------------------------------------------------
# worker side


@dataclass
class _Worker:
    settings: RunSettings
    parent: int
    classifier: Any
    engine: DeferredEngine | RemoteEngine
    deidentifier: Deidentifier
    versions: dict[str, str]
    flush: bool


_WORKER: _Worker | None = None


def _init_worker(
    settings: RunSettings, flush: bool = True, servers: tuple[tuple[str, bytes], ...] = ()
) -> None:
    """Load the classifier once per worker process (one inference thread each).

    With ``servers`` (the shared inference processes' addresses and keys), the worker loads no
    model: it connects to one of them, which scores its frames and reads their text.

    The OCR engine loads when an input first needs it
    (:class:`~scrubber.detect.ocr.DeferredEngine`): about a second of CPU per worker that a run
    of clean slices never spends. The driver checked that it can load
    (:func:`~scrubber.detect.ocr.check_engine`).

    ``flush=False`` leaves flushing a released output to disk to the driver, which does it
    before the rename: a worker of the local pool then goes on to its next input instead of
    waiting for the disk (a fifth of a clean CT slice's time). A Ray worker, possibly on another
    machine, flushes what it writes itself.
    """
    global _WORKER  # noqa: PLW0603 - one worker state per process, set by the pool initializer
    from scrubber.detect import default_model_dir, load_classifier

    classifier: Any
    engine: DeferredEngine | RemoteEngine
    _limit_image_threads(settings.threads)
    if servers:
        manifest = Manifest.read(settings.model_dir or default_model_dir())
        classifier, engine = connect(servers, manifest, settings.ocr)
    else:
        classifier = load_classifier(
            settings.model_dir, device=settings.device, threads=settings.threads
        )
        engine = DeferredEngine(settings.ocr, threads=settings.threads)
    store = KeyStore(settings.key_path, settings.deid.project) if settings.key_path else None
    _WORKER = _Worker(
        settings=settings,
        parent=os.getppid(),
        classifier=classifier,
        engine=engine,
        deidentifier=Deidentifier(settings.deid, settings.secret, store),
        versions=versions(classifier.manifest, settings),
        flush=flush,
    )


def _limit_image_threads(threads: int) -> None:
    """Give OpenCV (model input, previews, redaction) the worker's thread count.

    OpenCV otherwise runs a pool of one thread per core in every worker: on a machine the
    workers already fill, its threads wait for cores the other workers hold (2 cores, three
    pairs of 2,000-slice runs: a clean CT slice about 4% slower than with one thread).
    """
    try:
        import cv2
    except ImportError:  # the OCR and model-input imports report it where it matters
        return
    cv2.setNumThreads(max(1, threads))


def versions(manifest: Manifest, settings: RunSettings) -> dict[str, str]:
    """List what an output depends on: scrubber, model, OCR engine, policy, project, layout.

    Parameters
    ----------
    manifest : Manifest
        The classifier's manifest.
    settings : RunSettings
        The run's settings.

    Returns
    -------
    dict of str to str
        Version strings, also the ledger's fingerprint.
    """
    from scrubber import __version__

    return {
        "scrubber": __version__,
        "classifier": f"{manifest.version} sha256:{manifest.sha256[:16]}",
        "ocr": settings.ocr,
        "policy": settings.policy,
        "project": settings.deid.project,
        "layout": settings.layout,
        "deid": _deid_fingerprint(settings.deid),
    }


def _deid_fingerprint(config: DeidConfig) -> str:
    text = repr(
        (
            sorted(str(o) for o in config.options),
            config.strict,
            sorted(str(k) for k in config.keep_private),
            str(config.date_shift_scope),
            config.date_shift_days,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def process(task: Task) -> WorkResult:
    """Scrub one input in a worker and stage what it produces (never raises for a bad input).

    Parameters
    ----------
    task : Task
        The input.

    Returns
    -------
    WorkResult
        The outcome and the staged ``(temporary, final)`` files for the driver to rename.

    Raises
    ------
    RunnerError
        If the OCR engine failed to load in this worker: a fault of the installation, not of
        the input, so the run stops and the input is left for the next run.
    """
    worker = _WORKER
    if worker is None:
        raise RuntimeError("process() runs in a worker set up by the batch run")
    start = time.perf_counter()
    settings = worker.settings
    data, digest = _read_input(task.path)
    if digest is None or not (
        looks_like_dicom(task.path) if data is None else looks_like_dicom_head(data)
    ):
        return WorkResult(
            task.name,
            "skipped",
            ["not_dicom" if digest is not None else "unreadable_file"],
            None,
            [],
            digest,
            seconds=time.perf_counter() - start,
            versions=worker.versions,
        )
    try:
        dataset = read_instance(task.path, data=data)
        data = None  # parsed: the copy in memory is not needed any more
    except ScrubberError as exc:
        result = InstanceResult(
            outcome=Outcome.QUARANTINED, reason=QuarantineReason.UNREADABLE, message=str(exc)
        )
    else:
        result = scrub_instance(
            dataset,
            classifier=worker.classifier,
            engine=worker.engine,
            deidentifier=worker.deidentifier,
            config=ScrubConfig(policy=_policy(settings.policy)),
        )
    if os.getppid() != worker.parent:  # the driver is gone: write nothing more
        os._exit(1)
    if isinstance(worker.classifier, RemoteClassifier) and worker.classifier.failure:
        # The shared inference process is gone or failed: not this input's fault, so it is
        # not held; the run stops and the input is left for the next run.
        raise RunnerError(str(worker.classifier.failure))
    if worker.engine.error is not None:
        # The OCR engine failed to load here although the driver's check passed (a damaged
        # model file, memory): no input that needs OCR can be done, so the run stops, and
        # this one is not held for a fault of the installation.
        raise RunnerError(
            f"The OCR engine {settings.ocr!r} could not be loaded in a worker "
            f"({worker.engine.error.reason}); the run stops. What is done stays done: reinstall "
            "scrubber (pip install -e . from the project root), then rerun the same command."
        )
    staged: list[tuple[Path, Path]] = []
    unflushed: list[Path] = []
    if result.released and result.dataset is not None:
        final = _output_path(settings, task.name, result)
        try:
            tmp = stage_instance(result.dataset, final)
        except UnencodableDatasetError as exc:  # this instance, not the disk: hold it
            result.outcome = Outcome.QUARANTINED
            result.reason = QuarantineReason.INTERNAL_ERROR
            result.message = f"The output could not be written: {exc}"
        except OutputError as exc:  # disk full, read-only: nothing is placed, the next run retries
            return _not_written(task, digest, result.frames, exc)
        else:
            if worker.flush:
                try:
                    flush_file(tmp)
                except OSError as exc:
                    discard_staged([(tmp, final)])
                    return _not_written(task, digest, result.frames, exc)
            else:
                unflushed = [tmp]
            staged = [(tmp, final)]
    result.dataset = None
    if not result.released:
        extra = {"digest": digest, "versions": worker.versions}
        try:
            staged = stage_quarantine(
                task.path, settings.quarantine, Path(task.name), result, extra
            )
        except OutputError as exc:  # disk full, read-only: nothing is placed, the next run retries
            return _not_written(task, digest, result.frames, exc)
    reasons = [result.reason.value] if result.reason else []
    return WorkResult(
        name=task.name,
        outcome=result.outcome.value,
        reasons=reasons,
        output=str(staged[0][1]) if staged else None,
        staged=staged,
        digest=digest,
        frames=result.frames,
        ocr_frames=result.ocr_frames,
        seconds=time.perf_counter() - start,
        stages=dict(result.seconds),
        versions=worker.versions,
        unflushed=unflushed,
    )


def _not_written(task: Task, digest: str | None, frames: int, exc: Exception) -> WorkResult:
    """Return ``failed`` for an input whose files could not be written (retried next run)."""
    _log_not_written(exc)
    return WorkResult(task.name, "failed", ["output_error"], None, [], digest, frames)


def _log_not_written(exc: Exception) -> None:
    """Log a write failure by its system error (``ENOSPC``, ``EACCES``), never by its paths.

    Input paths can carry patient names.
    """
    cause = exc.reason if isinstance(exc, ScrubberError) else type(exc).__name__
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, OSError) and candidate.errno:
            cause = errno.errorcode.get(candidate.errno, cause)
            break
    _log.error(
        "cannot write the files of one input (%s: disk full or read-only?); nothing of it is in "
        "place and the next run retries it",
        cause,
    )


def _policy(name: str) -> Any:
    from scrubber.detect.decide import Policy

    return Policy(name)


#: Inputs up to this size are read into memory once, for their digest and their parse; larger
#: ones are streamed through the digest and parsed from the file (never two copies of a large
#: multi-frame file at once).
_IN_MEMORY_BYTES: Final = 64 * 1024 * 1024


def _read_input(path: Path) -> tuple[bytes | None, str | None]:
    """Return a small input's content and its SHA-256; a large one's digest only.

    ``(None, None)`` if the file cannot be read.
    """
    try:
        with path.open("rb") as fp:
            if os.fstat(fp.fileno()).st_size <= _IN_MEMORY_BYTES:
                data = fp.read()
                return data, hashlib.sha256(data).hexdigest()
    except OSError:
        return None, None
    return None, _digest(path)


def _digest(path: Path) -> str | None:
    """Return a file's SHA-256, streamed; ``None`` if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fp:
            for block in iter(lambda: fp.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _output_path(settings: RunSettings, name: str, result: InstanceResult) -> Path:
    if settings.layout == "mirror" or result.dataset is None:
        return settings.out / name if settings.source.is_dir() else settings.out / Path(name).name
    return uid_layout_path(settings.out, result.dataset, name)


def uid_layout_path(out_root: Path, ds: Dataset, name: str) -> Path:
    """Return ``<out>/<Study UID>/<Series UID>/<SOP UID>.dcm`` of a de-identified instance.

    Parameters
    ----------
    out_root : Path
        The output tree.
    ds : pydicom.dataset.Dataset
        The de-identified instance (its UIDs are already remapped).
    name : str
        The input's relative name, for a stable file name when the SOP Instance UID is missing.

    Returns
    -------
    Path
        Where the instance goes in the ``uids`` layout.
    """
    parts = [str(ds.get(k, "") or "unknown") for k in ("StudyInstanceUID", "SeriesInstanceUID")]
    sop = str(ds.get("SOPInstanceUID", "") or hashlib.sha256(name.encode()).hexdigest()[:32])
    return out_root.joinpath(*parts, f"{sop}.dcm")


#: Inputs in a row whose worker died, each alone, that stop the run (not one input's fault).
_CRASHES_IN_A_ROW: Final = 3

#: Inputs handed to the local pool per worker process at a time. The pool's own thread keeps
#: the workers fed from them while the driver waits for the disk to flush an output: at two
#: per worker, py-spy showed the workers of a clean CT series idle a tenth of the time (2,000
#: slices on 2 cores, side by side: six or twelve per pair of workers 4-6% faster than two;
#: four and eight within the noise of each other). A worker's death makes every input in
#: flight a suspect that is redone alone, so more would only slow that rare path down.
_IN_FLIGHT_PER_WORKER: Final = 4


class _WorkerDiedError(Exception):
    """A worker process of the local pool died; the pool cannot be used any more."""


def _outcome(future: Future[WorkResult], name: str) -> WorkResult:
    """Return the worker's result, or a ``failed`` one (left for the next run) if it raised."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise _WorkerDiedError from None
    except RunnerError:  # the worker says the run cannot go on
        raise
    except Exception as exc:  # a bug in one input's work must not stop the others
        _log.error(
            "the work on one input raised %s; it is left for the next run", type(exc).__name__
        )
        return WorkResult(name, "failed", ["internal_error"], None, [], None)


class RayWorker:
    """A Ray actor running :func:`process` with its own models (``ray.remote`` wraps it)."""

    def __init__(self, settings: RunSettings) -> None:
        _init_worker(settings)

    def process(self, task: Task) -> WorkResult:
        """Process one input (see :func:`process`)."""
        return process(task)


#: Object store of a private local Ray instance: results are small (paths and figures).
_RAY_STORE_BYTES: Final = 128 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# driver side


class BatchRun:
    """One ``scrubber run`` over an input tree (the driver: plan, dispatch, commit, record).

    Parameters
    ----------
    settings : RunSettings
        Paths and processing settings.
    ledger : Path
        The ledger database.
    fingerprint : dict of str to str
        Versions the outputs depend on (see :func:`versions`); a ledger started under other
        versions is refused.
    workers : int
        Worker processes (1 runs everything in this process), or Ray actors.
    engine : {"local", "ray"}, optional
        ``local``: a process pool on this machine; ``ray``: an actor pool on a Ray cluster (the
        driver still owns the ledger and every rename, so input, output and quarantine must be
        on a file system every node mounts at the same path).
    address : str, optional
        The Ray cluster to join (default: ``$RAY_ADDRESS``, else a local Ray instance).
    start_method : {"spawn", "forkserver"}, optional
        How local worker processes start: ``spawn`` (fresh interpreters), or ``forkserver``
        once :func:`scrubber.cli.prestart.start_worker_server` has started one (the
        ``scrubber`` command does), whose workers need not import anything.

    Raises
    ------
    ConfigError
        If the folders overlap, another run holds the output, or the ledger does not fit, or
        the OCR engine cannot be loaded (:class:`~scrubber.detect.ocr.OcrUnavailableError`).
    """

    def __init__(
        self,
        settings: RunSettings,
        ledger: Path,
        fingerprint: dict[str, str],
        workers: int,
        *,
        engine: Literal["local", "ray"] = "local",
        address: str | None = None,
        start_method: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        self.settings = settings
        self.start_method = start_method
        self.workers = max(1, workers)
        self.engine = engine
        self.address = address
        if settings.inference == "shared" and engine == "ray":
            raise ConfigError(
                "Shared inference runs on this machine's GPUs; with --engine ray every actor "
                "holds its own models (and its GPU). Use --inference worker with --engine ray."
            )
        check_engine(settings.ocr)  # workers load it only when an input first needs it
        _check_paths(settings, ledger)
        try:
            settings.out.mkdir(parents=True, exist_ok=True)
            make_private_dirs(settings.quarantine, settings.quarantine)
        except OSError as exc:  # a read-only or missing parent: refused before any work
            raise ConfigError(
                f"Cannot create the output {settings.out} or the quarantine "
                f"{settings.quarantine} ({exc.strerror or type(exc).__name__}); check that their "
                "parents exist and are writable, or choose other places."
            ) from None
        self._lock_fp = _lock(ledger)
        try:
            self.ledger = Ledger(ledger, fingerprint)
        except BaseException:
            self._lock_fp.close()
            raise
        self.fingerprint = fingerprint
        self._worker_died = False  # set when a worker process died during run()
        # Inputs the ledger knew when the run was planned; None: not planned here, ask the ledger
        self._recorded: set[str] | None = None
        # The shared inference processes' addresses and keys while a run is on
        self._servers: tuple[tuple[str, bytes], ...] = ()
        self._inference_stats: list[InferenceStats] = []

    def close(self) -> None:
        """Close the ledger and release the output lock."""
        self.ledger.close()
        self._lock_fp.close()

    def __enter__(self) -> BatchRun:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def recover(self) -> int:
        """Undo what a killed run left half-done; returns how many inputs it touched.

        Final files a killed run recorded for unfinished inputs are removed, and every hidden
        temporary of scrubber's under the output and the quarantine is deleted.
        """
        unsettled = self.ledger.unsettled()
        for paths in unsettled.values():
            for name in paths:
                with contextlib.suppress(FileNotFoundError):
                    Path(name).unlink()
        self._sweep_temporaries()
        return len(unsettled)

    def _sweep_temporaries(self) -> None:
        """Delete every hidden temporary of scrubber's under the output and the quarantine.

        Only while no worker is writing: before work starts, or after it has all ended.
        """
        for root in (self.settings.out, self.settings.quarantine):
            for directory, _dirs, files in os.walk(root):
                for file in files:
                    if file.startswith(".") and file.endswith(".tmp"):
                        with contextlib.suppress(FileNotFoundError):
                            (Path(directory) / file).unlink()

    def plan(self) -> tuple[list[Task], int]:
        """List inputs still to do (new, changed or unfinished) and count those already done."""
        done = self.ledger.finished()
        self._recorded = self.ledger.names()
        source = self.settings.source
        tasks, skipped = [], 0
        for path in iter_files(source):
            name = path.name if source.is_file() else path.relative_to(source).as_posix()
            try:
                stat = path.stat()
            except OSError:
                continue
            if done.get(name) == (stat.st_size, stat.st_mtime_ns):
                skipped += 1
                continue
            tasks.append(Task(name, path, stat.st_size, stat.st_mtime_ns))
        return tasks, skipped

    def run(
        self, tasks: list[Task], on_result: Callable[[LedgerRow], None] | None = None
    ) -> RunSummary:
        """Process ``tasks`` and record each in the ledger as it finishes.

        Parameters
        ----------
        tasks : list of Task
            From :meth:`plan`.
        on_result : callable, optional
            Called with each finished row (progress display).

        Returns
        -------
        RunSummary
            Counts and timings of this run.
        """
        summary = RunSummary()
        started = time.perf_counter()
        self._worker_died = False
        self._inference_stats = []
        try:
            for result in self._results(tasks):
                row = self._commit(result)
                summary.counts[row.outcome] += 1
                summary.reasons.update(row.reasons)
                summary.frames += result.frames
                summary.ocr_frames += result.ocr_frames
                summary.stage_seconds.update(result.stages)
                if on_result is not None:
                    on_result(row)
            if self._worker_died:  # a dead worker may have left a half-written temporary
                self._sweep_temporaries()
        finally:
            summary.seconds = time.perf_counter() - started
            summary.ledger_counts = Counter(r.outcome for r in self.ledger.rows())
            summary.inference = list(self._inference_stats)
        return summary

    def _results(self, tasks: list[Task]) -> Iterator[WorkResult]:
        if self.engine == "ray":
            yield from self._ray_results(tasks)
            return
        if not tasks:
            return
        with self._inference():
            yield from self._local_results(tasks)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Start the shared inference processes for a run (none with ``inference="worker"``).

        One per GPU when the models run on CUDA, one in all on the CPU; stopped (and their
        figures kept) when the run ends, however it ends.
        """
        if self.settings.inference != "shared":
            yield
            return
        servers = [
            InferenceServer(
                self.settings.model_dir,
                self.settings.device,
                self.settings.ocr,
                threads=self.settings.threads,
                visible=gpu,
            )
            for gpu in _inference_gpus(self.settings.device)
        ]
        try:
            for server in servers:
                server.start()
            self._servers = tuple((s.address, s.authkey) for s in servers)
            yield
        finally:
            self._servers = ()
            for server in servers:
                stats = server.stop()
                if stats is not None:
                    self._inference_stats.append(stats)

    def _local_results(self, tasks: list[Task]) -> Iterator[WorkResult]:
        if self.workers == 1:
            _init_worker(self.settings, flush=False, servers=self._servers)
            for task in tasks:
                self.ledger.start(task.name, task.size, task.mtime_ns)
                yield process(task)
            return
        queue = deque(tasks)
        while queue:
            in_flight = _IN_FLIGHT_PER_WORKER * self.workers
            suspects = yield from self._pooled(queue, self.workers, in_flight)
            # A worker died (a decoder crash, the kernel's out-of-memory killer) and the pool with
            # it. Every input in flight then is redone alone in a fresh worker: one that ends its
            # worker again is held, and the run goes on without it.
            yield from self._isolate(deque(suspects))

    def _isolate(self, suspects: deque[Task]) -> Iterator[WorkResult]:
        """Redo ``suspects`` one at a time, each alone in a worker; hold those that end it.

        Workers that die for inputs in a row, with none finishing in between, point at something
        other than one input (models that cannot load, memory exhausted whatever the input): the
        run stops then, holding nothing, and the inputs stay for the next run.
        """
        crashed: list[Task] = []
        in_a_row = 0
        while suspects:
            finished = [0]
            died = yield from self._pooled(suspects, 1, 1, finished)
            in_a_row = (0 if finished[0] else in_a_row) + len(died)
            crashed.extend(died)
            if in_a_row >= _CRASHES_IN_A_ROW:
                raise RunnerError(
                    f"Worker processes died on {in_a_row} inputs in a row, each processed alone: "
                    "something other than one input is wrong (the models cannot load, or memory "
                    "runs out whatever the input). Nothing of those inputs is in place; check "
                    "the log and the machine, then rerun the same command."
                )
        for task in crashed:
            yield self._crashed(task)

    def _pooled(
        self,
        queue: deque[Task],
        workers: int,
        in_flight: int,
        finished_count: list[int] | None = None,
    ) -> Generator[WorkResult, None, list[Task]]:
        """Run ``queue``'s tasks on a fresh pool of ``workers`` processes, yielding each result.

        At most ``in_flight`` tasks are submitted at a time; ``finished_count[0]`` counts the
        results yielded. Returns the tasks that were in flight when a worker process died (the
        pool is unusable then); the tasks not yet submitted stay in ``queue``.
        """
        context = multiprocessing.get_context(self.start_method)
        pool = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.settings, False, self._servers),
        )
        running: dict[Future[WorkResult], Task] = {}
        suspects: list[Task] = []
        try:
            while (queue or running) and not suspects:
                while queue and len(running) < in_flight:
                    task = queue.popleft()
                    self.ledger.start(task.name, task.size, task.mtime_ns)
                    try:
                        running[pool.submit(process, task)] = task
                    except BrokenProcessPool:  # a worker died since the last look
                        suspects.append(task)
                        break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        result = _outcome(future, task.name)
                    except _WorkerDiedError:
                        suspects.append(task)
                        continue
                    if finished_count is not None:
                        finished_count[0] += 1
                    yield result
            if suspects:
                self._worker_died = True
                _log.error(
                    "a worker process died (a decoder crash, or out of memory); the %d input(s) "
                    "it could have held are redone one at a time",
                    len(suspects) + len(running),
                )
                for future, task in running.items():  # their results are lost with the pool
                    if future.done() and not future.cancelled() and future.exception() is None:
                        discard_staged(future.result().staged)
                    suspects.append(task)
                running.clear()
        finally:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            for future in running:  # finished after we stopped listening: withdraw its files
                if future.done() and not future.cancelled() and future.exception() is None:
                    discard_staged(future.result().staged)
        return suspects

    def _crashed(self, task: Task) -> WorkResult:
        """Hold an input whose processing ended its worker process twice (``worker_crashed``).

        The original goes to the quarantine with its note and no preview: rendering it here could
        take the driver down the same way.
        """
        digest = _digest(task.path)
        result = InstanceResult(
            outcome=Outcome.QUARANTINED,
            reason=QuarantineReason.WORKER_CRASHED,
            message=(
                "Processing this file ended the worker process twice (a decoder crash, or memory "
                "exhausted): it is held without a preview. Check it with another tool before "
                "releasing it."
            ),
        )
        try:
            staged = stage_quarantine(
                task.path,
                self.settings.quarantine,
                Path(task.name),
                result,
                {"digest": digest},
                with_preview=False,
            )
        except OutputError as exc:
            return _not_written(task, digest, 0, exc)
        reason = QuarantineReason.WORKER_CRASHED.value
        return WorkResult(task.name, "quarantined", [reason], str(staged[0][1]), staged, digest)

    def _ray_results(self, tasks: list[Task]) -> Iterator[WorkResult]:
        """Process ``tasks`` on a pool of Ray actors, each holding its models (one CPU each)."""
        try:  # typed as Any: Ray is an optional extra
            ray: Any = importlib.import_module("ray")
            importlib.import_module("ray.exceptions")
        except ImportError:
            raise ConfigError("--engine ray needs Ray: pip install 'scrubber[ray]'.") from None
        started_here = not ray.is_initialized()
        if started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            address = self.address or os.environ.get("RAY_ADDRESS")
            if address:
                options["address"] = address
            else:  # a private local instance sized to this run
                options.update(num_cpus=self.workers, object_store_memory=_RAY_STORE_BYTES)
            ray.init(**options)
        gpus = 1 if self.settings.device == "cuda" else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus)(RayWorker)
        idle = [remote.remote(self.settings) for _ in range(self.workers)]
        everyone = list(idle)
        # Each actor holds one input at a time, so an actor that dies names its input: it is
        # redone once on a fresh actor, and held as worker_crashed if that one dies too.
        queue: deque[tuple[Task, bool]] = deque((task, False) for task in tasks)
        flying: dict[Any, tuple[Any, Task, bool]] = {}
        crashed: list[Task] = []
        in_a_row = 0
        try:
            while queue or flying:
                while queue and idle:
                    task, retry = queue.popleft()
                    handle = idle.pop()
                    self.ledger.start(task.name, task.size, task.mtime_ns)
                    flying[handle.process.remote(task)] = (handle, task, retry)
                ready, _ = ray.wait(list(flying), num_returns=1)
                for ref in ready:
                    handle, task, retry = flying.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayActorError:
                        self._worker_died = True
                        with contextlib.suppress(Exception):
                            ray.kill(handle)
                        fresh = remote.remote(self.settings)
                        everyone.append(fresh)
                        idle.append(fresh)
                        if not retry:
                            _log.error(
                                "a Ray worker died (a decoder crash, or out of memory); its "
                                "input is redone on a fresh one"
                            )
                            queue.appendleft((task, True))
                            continue
                        crashed.append(task)
                        in_a_row += 1
                        if in_a_row >= _CRASHES_IN_A_ROW:
                            raise RunnerError(
                                f"Ray workers died on {in_a_row} inputs in a row, each twice: "
                                "something other than one input is wrong (the models cannot "
                                "load, or memory runs out whatever the input). Nothing of those "
                                "inputs is in place; check the cluster, then rerun."
                            ) from None
                        continue
                    except ray.exceptions.RayTaskError as exc:  # a bug: this input only
                        if isinstance(exc.cause, RunnerError):  # the run cannot go on
                            raise exc.cause from None
                        idle.append(handle)
                        _log.error(
                            "the work on one input raised %s; it is left for the next run",
                            type(exc.cause).__name__ if exc.cause else "an error",
                        )
                        yield WorkResult(task.name, "failed", ["internal_error"], None, [], None)
                        continue
                    idle.append(handle)
                    in_a_row = 0
                    yield result
            for task in crashed:
                yield self._crashed(task)
        finally:
            for handle in everyone:
                with contextlib.suppress(Exception):
                    ray.kill(handle)
            for ref, (_handle, _task, _retry) in flying.items():  # withdraw what they staged
                with contextlib.suppress(Exception):
                    ready, _ = ray.wait([ref], timeout=0)
                    if ready:
                        discard_staged(ray.get(ref).staged)
            if started_here:
                ray.shutdown()

    def _commit(self, result: WorkResult) -> LedgerRow:
        """Put one input's staged files in place and record it (in that order)."""
        finals = [str(final) for _tmp, final in result.staged]
        recorded = self._recorded is None or result.name in self._recorded
        for old in self.ledger.previous_paths(result.name) if recorded else []:
            if old not in finals:  # an earlier run's output of a changed input
                with contextlib.suppress(FileNotFoundError):
                    Path(old).unlink()
        failed = LedgerRow(result.name, "failed", ["output_error"], None, result.frames, 0.0)
        if result.outcome == "failed":  # nothing could be staged: left for the next run
            return failed
        try:
            for tmp in result.unflushed:  # on disk before the rename
                flush_file(tmp)
        except OSError as exc:
            discard_staged(result.staged)
            _log_not_written(exc)
            return failed
        try:
            self.ledger.committing(result.name, finals)
        except LedgerError:  # the run stops: nothing of this input may stay behind
            discard_staged(result.staged)
            raise
        try:
            commit_staged(result.staged)
        except OutputError as exc:
            discard_staged(result.staged)
            for final in finals:
                with contextlib.suppress(FileNotFoundError):
                    Path(final).unlink()
            self.ledger.reset(result.name)  # not done: the next run tries again
            _log.error("cannot move the files of one input into place: %s", exc.reason)
            return failed
        row = LedgerRow(
            input=result.name,
            outcome=result.outcome,
            reasons=result.reasons,
            output=result.output,
            frames=result.frames,
            seconds=result.seconds,
            stages=result.stages,
            digest=result.digest,
            versions=result.versions,
        )
        self.ledger.finish_later(row, finals)  # written with the next input's `committing`
        return row

    def write_report(self, path: Path) -> int:
        """Write one JSON line per finished input of the whole ledger; return the count."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        count = 0
        try:
            lines = [row.report() for row in self.ledger.rows()]
            lines += [  # inputs a failure or a kill left unfinished: the next run does them
                LedgerRow(name, "failed", ["not_finished"], None, 0, 0.0).report()
                for name in self.ledger.unsettled()
            ]
            with tmp.open("w", encoding="utf-8") as fp:
                for line in sorted(lines, key=lambda r: str(r["input"])):
                    fp.write(json.dumps(line) + "\n")
                    count += 1
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return count


def _inference_gpus(device: str) -> list[str | None]:
    """One ``CUDA_VISIBLE_DEVICES`` entry per inference process: per GPU on CUDA, else one."""
    from scrubber.detect.classifier import cuda_available

    if device == "cpu" or not cuda_available():  # "cuda" without CUDA was refused before this
        return [None]
    # None: every GPU hidden by $CUDA_VISIBLE_DEVICES; "cuda" then fails to start, with its reason
    return list(gpu_devices()) or [None]


def _check_paths(settings: RunSettings, ledger: Path) -> None:
    source, out, quarantine = settings.source, settings.out, settings.quarantine
    if not source.exists():
        raise ConfigError(f"The input {source} does not exist; give a file or a folder.")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"The output {out} is a file; give a folder.")
    pairs = [(out, source, "output", "input"), (quarantine, source, "quarantine", "input")]
    pairs.append((quarantine, out, "quarantine", "output"))
    for a, b, a_name, b_name in pairs:
        if _inside(a, b) or _inside(b, a):
            raise ConfigError(
                f"The {a_name} folder {a} overlaps the {b_name} {b}; keep them apart so that "
                "originals are never overwritten and quarantined files never reach the output."
            )
    if _inside(ledger, source):
        raise ConfigError(f"The ledger {ledger} is inside the input; put it elsewhere.")
    if settings.key_path is not None and (
        _inside(settings.key_path, out) or _inside(settings.key_path, quarantine)
    ):
        raise ConfigError(
            f"The re-identification key {settings.key_path} would sit inside the output or the "
            "quarantine; keep it apart (choose another --key-file)."
        )


def _lock(ledger: Path) -> Any:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    lock = ledger.with_name(ledger.name + ".lock")
    try:
        fp = os.fdopen(os.open(lock, os.O_CREAT | os.O_RDWR, 0o600), "r+")
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the lock file {lock} ({exc.strerror}); check the folder's permissions "
            "or give another --ledger path."
        ) from None
    try:
        fcntl.flock(fp, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fp.close()
        raise ConfigError(
            f"Another scrubber run is writing with the ledger {ledger}; wait for it to finish "
            "(two runs into one output would overwrite each other's files)."
        ) from None
    return fp
