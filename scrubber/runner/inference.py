"""Shared inference: one process per GPU scores frames and reads text for every CPU worker.

With ``--device cuda`` (or ``auto`` on a machine whose ONNX Runtime offers CUDA) a batch run
does not load the models in each worker: that would put one CUDA context and one copy of each
model per worker on the GPU, and feed it batches of a few frames. Instead the driver starts one
*inference process* per GPU (:class:`InferenceServer`), and the CPU workers decode, render and
reduce frames and send the reduced frames there (:class:`RemoteClassifier`), and the frames that
need OCR (:class:`RemoteEngine`).

The inference process gathers the classifier requests of all workers into one batch: it takes
every request waiting, and while a worker is still busy on the CPU (so that another request may
come) it waits up to :data:`LINGER_SECONDS` for more, up to its batch limit. The limit adapts
to the device's memory: it starts at :data:`GPU_BATCH` frames on CUDA and halves whenever ONNX
Runtime runs out of memory (the batch is then scored again in smaller chunks), down to one
frame. Frame size does not change what travels: every frame is reduced to the model's 4 x 256
x 256 ``uint8`` input in the worker (256 KiB, whatever the frame), and OCR reads one frame or
one tile of at most the engine's working size at a time. OCR requests are served by a second
thread, so a long OCR read never holds up scoring.

Faults: if an inference process cannot start (no CUDA, a damaged model), the run is refused
before any work, with its message. If it dies during the run, a worker's request fails, the
input is not held (the fault is not the input's) and the run stops with
:class:`~scrubber.runner.batch.RunnerError`; what is done stays done and the next run does the
rest. So does an OCR engine that cannot load there. An error raised by one request (an engine
failing on one frame) is raised again in the worker, where the pipeline holds that input as it
would with the models in the worker.

Connections are Unix sockets in a private folder (0700), authenticated by a random key, so no
other user on the machine can send frames to the process or read them from it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from scrubber.detect.classifier import DEFAULT_BATCH_SIZE, Manifest, TextClassifier
from scrubber.detect.ocr import OcrUnavailableError, TextRegion
from scrubber.errors import ConfigError, ScrubberError

__all__ = [
    "GPU_BATCH",
    "LINGER_SECONDS",
    "InferenceError",
    "InferenceServer",
    "InferenceStats",
    "RemoteClassifier",
    "RemoteEngine",
    "connect",
    "gpu_devices",
]

_log = logging.getLogger(__name__)

#: First batch limit of an inference process on CUDA (frames); halved on out-of-memory.
GPU_BATCH: Final = 256
#: How long the inference process waits for more requests while a worker may still send one.
LINGER_SECONDS: Final = 0.002
#: How long the driver waits for an inference process to load its models.
_START_SECONDS: Final = 300.0
#: Words in ONNX Runtime's (and CUDA's) messages when memory runs out.
_OUT_OF_MEMORY: Final = (
    "out of memory",
    "failed to allocate",
    "bad_alloc",
    "alloc_failed",
    "cudaerrormemoryallocation",
)


class InferenceError(ScrubberError):
    """The shared inference process failed or is gone; the run cannot go on."""

    reason = "inference"


@dataclass
class InferenceStats:
    """What one inference process did (counts only: no PHI).

    Attributes
    ----------
    device : str
        ``cuda`` or ``cpu``.
    requests : int
        Classifier requests from workers.
    batches : int
        Batches scored (each one or more requests, from one or more workers).
    frames : int
        Frames scored.
    largest_batch : int
        Most frames in one batch.
    batch_limit : int
        The batch limit at the end (lower than at the start after an out-of-memory).
    ocr_reads : int
        OCR reads (frames or tiles).
    """

    device: str = "cpu"
    requests: int = 0
    batches: int = 0
    frames: int = 0
    largest_batch: int = 0
    batch_limit: int = 0
    ocr_reads: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready data, with the mean frames per batch."""
        data: dict[str, Any] = dict(self.__dict__)
        data["mean_batch"] = round(self.frames / self.batches, 2) if self.batches else 0.0
        return data


# ------------------------------------------------------------------------------- the process


@dataclass(frozen=True)
class _ServerConfig:
    model_dir: Path | None
    device: Literal["auto", "cpu", "cuda"]
    threads: int
    ocr: str
    batch: int
    linger: float
    #: ``CUDA_VISIBLE_DEVICES`` for this process (one GPU), or None to leave it.
    visible: str | None


@dataclass
class _Request:
    kind: str
    payload: Any
    future: Future[Any] = field(default_factory=Future)


class _Service:
    """The inference process's state: models, request queues and figures."""

    def __init__(self, classifier: TextClassifier, config: _ServerConfig) -> None:
        from scrubber.detect.ocr import DeferredEngine

        self.classifier = classifier
        self.config = config
        # On the GPU the OCR engine runs there too; on the CPU it is left at its own choice
        self.engine = DeferredEngine(
            config.ocr,
            threads=config.threads,
            device="cuda" if classifier.device == "cuda" else None,
        )
        self.stats = InferenceStats(device=classifier.device, batch_limit=classifier.batch_size)
        self.scores: queue.Queue[_Request | None] = queue.Queue()
        self.reads: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._receiving = 0  # connections whose worker may send a request at any moment

    def receiving(self, delta: int) -> None:
        with self._lock:
            self._receiving += delta

    def may_send(self) -> int:
        with self._lock:
            return self._receiving

    # -- classifier ------------------------------------------------------------------------

    def score_loop(self) -> None:
        while True:
            first = self.scores.get()
            if first is None:
                return
            batch = [first]
            frames = len(first.payload)
            deadline = time.monotonic() + self.config.linger
            while frames < self.classifier.batch_size:
                try:
                    item = self.scores.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.may_send() == 0:
                        break
                    try:
                        item = self.scores.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    self.scores.put(None)  # stop after this batch
                    break
                batch.append(item)
                frames += len(item.payload)
            self._score(batch, frames)

    def _score(self, batch: list[_Request], frames: int) -> None:
        inputs = batch[0].payload if len(batch) == 1 else np.concatenate([r.payload for r in batch])
        try:
            scores = self._score_adapting(inputs)
        except Exception as exc:  # reported to the workers, which stop the run
            for request in batch:
                request.future.set_exception(exc)
            return
        start = 0
        for request in batch:
            end = start + len(request.payload)
            request.future.set_result(scores[start:end])
            start = end
        self.stats.requests += len(batch)
        self.stats.batches += 1
        self.stats.frames += frames
        self.stats.largest_batch = max(self.stats.largest_batch, frames)

    def _score_adapting(self, inputs: np.ndarray) -> np.ndarray:
        """Score, halving the batch limit each time the device runs out of memory."""
        while True:
            try:
                return self.classifier.score_batch(inputs)
            except Exception as exc:
                limit = self.classifier.batch_size
                if limit == 1 or not _out_of_memory(exc):
                    raise
                self.classifier.batch_size = limit // 2
                self.stats.batch_limit = self.classifier.batch_size
                _log.warning(
                    "the %s ran out of memory scoring %d frames at once; batches of at most %d "
                    "from now on",
                    self.classifier.device,
                    limit,
                    self.classifier.batch_size,
                )

    # -- OCR -------------------------------------------------------------------------------

    def read_loop(self) -> None:
        while True:
            request = self.reads.get()
            if request is None:
                return
            try:
                if request.kind == "max_side":
                    request.future.set_result(self.engine.max_side)
                else:
                    regions = self.engine.read(request.payload)
                    self.stats.ocr_reads += 1
                    request.future.set_result(regions)
            except Exception as exc:
                request.future.set_exception(exc)

    # -- connections -----------------------------------------------------------------------

    def handle(self, conn: Connection) -> None:
        """Serve one worker's connection: a request, its reply, until the worker goes."""
        try:
            while True:
                self.receiving(+1)
                try:
                    message = conn.recv()
                finally:
                    self.receiving(-1)
                kind, payload = message
                request = _Request(kind, payload)
                (self.scores if kind == "score" else self.reads).put(request)
                try:
                    reply: tuple[str, Any] = ("ok", request.future.result())
                except OcrUnavailableError as exc:
                    reply = ("ocr_unavailable", str(exc))
                except Exception as exc:  # this request's fault: the worker raises it again
                    reply = ("raised", _portable(exc))
                conn.send(reply)
        except (EOFError, OSError):  # the worker ended (done, or killed)
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()


def _portable(exc: Exception) -> Exception:
    """Return ``exc`` if it survives pickling, else a ``RuntimeError`` naming its type.

    The worker raises it again where a local engine or classifier would have raised it, so
    the input ends as it would have with the models in the worker (held as an internal error).
    It stays between the run's own processes: like any exception it may quote data, and, as
    everywhere in scrubber, only its type is ever logged.
    """
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__} in the inference process")
    return exc


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(word in text for word in _OUT_OF_MEMORY)


def _serve(address: str, authkey: bytes, config: _ServerConfig, control: Connection) -> None:
    """Run the inference process: load, report ready, serve until told to stop or orphaned."""
    if config.visible is not None:  # before ONNX Runtime is imported: this process's one GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = config.visible
    from scrubber.detect.classifier import load_classifier

    try:
        classifier = load_classifier(
            config.model_dir, device=config.device, threads=config.threads, batch_size=config.batch
        )
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
    except ScrubberError as exc:
        control.send(("error", str(exc)))
        return
    except Exception as exc:
        control.send(("error", f"the inference process could not start ({type(exc).__name__})"))
        return
    service = _Service(classifier, config)
    threads = [
        threading.Thread(target=service.score_loop, name="score", daemon=True),
        threading.Thread(target=service.read_loop, name="ocr", daemon=True),
        threading.Thread(target=_accept, args=(listener, service), name="accept", daemon=True),
    ]
    for thread in threads:
        thread.start()
    control.send(("ready", classifier.device, tuple(classifier.providers)))
    with contextlib.suppress(EOFError, OSError):
        control.recv()  # ("stop",), or EOF when the driver is gone
    service.scores.put(None)
    service.reads.put(None)
    for thread in threads[:2]:
        thread.join(timeout=30)
    with contextlib.suppress(OSError):
        control.send(("stats", service.stats))
    with contextlib.suppress(OSError):
        listener.close()


def _accept(listener: Listener, service: _Service) -> None:
    count = 0
    while True:
        try:
            conn = listener.accept()
        except OSError:  # closed: the process is stopping
            return
        except Exception:  # a client that failed the handshake: ignore it
            continue
        count += 1
        threading.Thread(
            target=service.handle, args=(conn,), name=f"conn-{count}", daemon=True
        ).start()


# ------------------------------------------------------------------------------ the driver side


def gpu_devices() -> list[str]:
    """List the GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    ``$CUDA_VISIBLE_DEVICES`` when set (empty or ``-1``: none, as CUDA reads it), else the GPUs
    ``nvidia-smi -L`` lists, else one (``"0"``) so that a machine whose ONNX Runtime has CUDA
    gets one inference process.

    Returns
    -------
    list of str
        One entry per GPU; empty when ``$CUDA_VISIBLE_DEVICES`` hides them all.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry == "-1":  # CUDA stops reading the list here
                break
            entries.append(entry)
        return entries
    smi = shutil.which("nvidia-smi")
    if smi:
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listed = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=20, check=True
            ).stdout
            count = sum(1 for line in listed.splitlines() if line.startswith("GPU "))
            if count:
                return [str(i) for i in range(count)]
    return ["0"]


class InferenceServer:
    """One inference process, started and stopped by the batch driver.

    Parameters
    ----------
    model_dir : Path or None
        Classifier folder.
    device : {"auto", "cpu", "cuda"}
        Where the models run.
    ocr : str
        OCR engine name.
    threads : int, optional
        CPU threads for ONNX Runtime in the process (for the CPU parts of a GPU run, and for a
        CPU-only shared run).
    visible : str, optional
        The ``CUDA_VISIBLE_DEVICES`` entry of this process's GPU.
    batch : int, optional
        First batch limit (default: :data:`GPU_BATCH` on CUDA, the classifier's default on the
        CPU).
    linger : float, optional
        Seconds to wait for more requests (see :data:`LINGER_SECONDS`).
    """

    def __init__(
        self,
        model_dir: Path | None,
        device: Literal["auto", "cpu", "cuda"],
        ocr: str,
        *,
        threads: int = 1,
        visible: str | None = None,
        batch: int | None = None,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="scrubber-inference-"))  # 0700
        self.address = str(self._folder / "socket")
        self.authkey = secrets.token_bytes(32)
        self.stats: InferenceStats | None = None
        self.device = "cpu"
        if batch is None:
            batch = GPU_BATCH if device == "cuda" else DEFAULT_BATCH_SIZE
        self._config = _ServerConfig(model_dir, device, threads, ocr, batch, linger, visible)
        self._control: Connection | None = None
        self._process: Any = None

    def start(self) -> None:
        """Start the process and wait until its models are loaded.

        Raises
        ------
        ConfigError
            If the process cannot load its models (no CUDA, a damaged model) or start.
        """
        context = multiprocessing.get_context("spawn")
        here, there = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self.address, self.authkey, self._config, there),
            name="scrubber-inference",
            daemon=True,
        )
        self._process.start()
        there.close()
        self._control = here
        try:
            if not here.poll(_START_SECONDS):
                raise ConfigError(
                    f"The inference process did not load its models in {_START_SECONDS:.0f} s; "
                    "check the GPU and the model folder, then rerun."
                )
            message = here.recv()
        except (EOFError, OSError):
            self.stop()
            raise ConfigError(
                "The inference process ended while loading its models (a crash of the GPU "
                "runtime, or out of memory); check the GPU, or run with --device cpu."
            ) from None
        except ConfigError:
            self.stop()
            raise
        if message[0] != "ready":
            self.stop()
            raise ConfigError(f"The inference process could not start: {message[1]}")
        self.device = message[1]
        _log.info("inference process on %s (%s)", self.device, ",".join(message[2]))

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self._process is not None and self._process.is_alive()

    def stop(self) -> InferenceStats | None:
        """Stop the process (its figures are kept in :attr:`stats`); safe to call twice."""
        control, self._control = self._control, None
        if control is not None:
            with contextlib.suppress(OSError, EOFError):
                control.send(("stop",))
                if control.poll(30):
                    message = control.recv()
                    if message[0] == "stats":
                        self.stats = message[1]
            control.close()
        if self._process is not None:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None
        shutil.rmtree(self._folder, ignore_errors=True)
        return self.stats

    def __enter__(self) -> InferenceServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ the worker side


class _Channel:
    """A worker's connection to an inference process: one request at a time."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        #: Set when the process is gone or failed: the run must stop.
        self.failure: InferenceError | None = None

    def request(self, kind: str, payload: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        with self._lock:
            try:
                self._conn.send((kind, payload))
                status, value = self._conn.recv()
            except (EOFError, OSError):
                self.failure = InferenceError(
                    "The inference process is gone (it crashed, or ran out of memory); the run "
                    "stops. What is done stays done: check the GPU, then rerun the same command."
                )
                raise self.failure from None
        if status == "ok":
            return value
        if status == "ocr_unavailable":
            raise OcrUnavailableError(value)
        raise value  # what scoring or reading this request raised there

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()


def connect(
    servers: Sequence[tuple[str, bytes]], manifest: Manifest, ocr: str
) -> tuple[RemoteClassifier, RemoteEngine]:
    """Connect a worker to one of the inference processes (chosen by its process id).

    Parameters
    ----------
    servers : sequence of (address, authkey)
        The inference processes of the run.
    manifest : Manifest
        The classifier's manifest (the process checked the model against it).
    ocr : str
        The OCR engine's name.

    Returns
    -------
    RemoteClassifier, RemoteEngine
        The worker's classifier and OCR engine, both served by that process.

    Raises
    ------
    InferenceError
        If the process cannot be reached.
    """
    address, authkey = servers[os.getpid() % len(servers)]
    try:
        channel = _Channel(Client(address, family="AF_UNIX", authkey=authkey))
    except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:
        raise InferenceError(
            f"A worker cannot reach the inference process ({type(exc).__name__}); the run stops."
        ) from None
    return RemoteClassifier(channel, manifest), RemoteEngine(channel, ocr)


class _RemoteSession:
    """Stands in for an ONNX Runtime session: chunks go to the inference process."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[Any]:
        (chunk,) = input_feed.values()
        return [self._channel.request("score", chunk)]

    def get_providers(self) -> list[str]:
        return ["InferenceProcess"]


class RemoteClassifier(TextClassifier):
    """A worker's classifier whose frames are scored by the shared inference process.

    Frames are reduced to the model input in the worker and sent as ``uint8`` (the process
    scales them exactly as :func:`~scrubber.detect.model_input.model_inputs` does, so scores
    are those of a local classifier). Everything else (thresholds, batching within an
    instance, repeat frames scored once) is :class:`~scrubber.detect.classifier.TextClassifier`'s.

    Parameters
    ----------
    channel : _Channel
        The worker's connection.
    manifest : Manifest
        The classifier's manifest.
    """

    def __init__(self, channel: _Channel, manifest: Manifest) -> None:
        super().__init__(_RemoteSession(channel), manifest, threads=0)
        self._channel = channel

    @property
    def device(self) -> str:
        """``"shared"``: the inference process holds the model."""
        return "shared"

    @property
    def failure(self) -> InferenceError | None:
        """Why the inference process cannot serve any more (``None`` while it can)."""
        return self._channel.failure

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        if chunk.dtype != np.uint8:  # float32 from model_inputs: back to the exact uint8
            chunk = np.rint(chunk * np.float32(255.0)).astype(np.uint8)
        return super()._run(np.ascontiguousarray(chunk))


class RemoteEngine:
    """A worker's OCR engine served by the shared inference process.

    Like :class:`~scrubber.detect.ocr.DeferredEngine`, it keeps a load failure in
    :attr:`error` (the process loads the engine on the first read).

    Parameters
    ----------
    channel : _Channel
        The worker's connection.
    name : str
        The engine's name.
    """

    def __init__(self, channel: _Channel, name: str) -> None:
        self._channel = channel
        self.name = name
        self.error: OcrUnavailableError | None = None
        self._max_side: int | None = None

    @property
    def failure(self) -> InferenceError | None:
        """Why the inference process cannot serve any more (``None`` while it can)."""
        return self._channel.failure

    def _request(self, kind: str, payload: Any) -> Any:
        if self.error is not None:
            raise self.error
        try:
            return self._channel.request(kind, payload)
        except OcrUnavailableError as exc:
            self.error = exc
            raise

    @property
    def max_side(self) -> int:
        """The engine's working size (asks the process once)."""
        if self._max_side is None:
            self._max_side = int(self._request("max_side", None))
        return self._max_side

    def read(self, view: np.ndarray) -> list[TextRegion]:
        """Read one rendered frame or tile in the inference process.

        Parameters
        ----------
        view : numpy.ndarray
            ``uint8`` frame, greyscale or RGB.

        Returns
        -------
        list of TextRegion
            Regions in ``view``'s pixel coordinates.
        """
        regions: list[TextRegion] = self._request("read", np.ascontiguousarray(view))
        return regions
