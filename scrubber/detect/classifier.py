"""The burned-in-text frame classifier: a small ONNX model run by ONNX Runtime.

The model ships in ``models/`` at the root of the source tree (or wherever ``SCRUBBER_MODEL_DIR``
points) as two files: the ONNX graph and a manifest, ``text_classifier.json``, that records the
graph's SHA-256 digest, its input and output, the score thresholds, and how it was trained and
measured. :func:`load_classifier` reads the manifest, checks the graph against the digest before
ONNX Runtime ever parses it (a mismatch raises :class:`~scrubber.errors.ModelIntegrityError`),
opens an inference session on the bytes it checked, and checks the session's input and output
against the manifest.

The model's contract: one input (``frames``), ``float32`` of shape ``[batch, 4, 256, 256]``, the
output of :func:`~scrubber.detect.model_input.model_inputs` (values in [0, 1], channels in the
order of :data:`~scrubber.detect.model_input.CHANNELS`), with a dynamic batch axis; one output
(``text_probability``), ``float32`` of shape ``[batch]``, the probability (sigmoid applied) that
the frame carries burned-in text. What the scores mean for a frame is
:mod:`scrubber.detect.routing`'s business.

Identical frames are scored once: :meth:`TextClassifier.score_views` within one instance, and
:class:`FrameBatcher` across the instances a batch runner feeds it (cine loops and series often
repeat frames byte for byte). Frames are told apart by a BLAKE2b digest of their shape, type and
bytes (:func:`frame_digest`).

Session settings are deliberate, not ONNX Runtime's defaults (which take every core): intra-op
threads from the ``threads`` argument, else ``SCRUBBER_THREADS``, else the usable cores up to
four, which do not spin while idle (the classifier shares the CPU with rendering, OCR and other
workers); one inter-op thread and sequential execution (the graph is a chain); full graph
optimisation. The CUDA execution provider comes first when it is asked for (``device="cuda"``,
an error without it) or allowed (``device="auto"``) and ONNX Runtime offers it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

import numpy as np

from scrubber.detect.model_input import CHANNELS, model_input, scale_inputs
from scrubber.detect.routing import Thresholds
from scrubber.errors import ConfigError, ModelIntegrityError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MANIFEST_NAME",
    "MODEL_DIR_ENV",
    "THREADS_ENV",
    "ClassifierStats",
    "Device",
    "FrameBatcher",
    "Manifest",
    "TextClassifier",
    "check_device",
    "cuda_available",
    "default_model_dir",
    "frame_digest",
    "load_classifier",
    "preload_cuda_libraries",
]

logger = logging.getLogger(__name__)

#: File name of the classifier's manifest inside the model folder.
MANIFEST_NAME: Final = "text_classifier.json"
#: Environment variable naming the model folder.
MODEL_DIR_ENV: Final = "SCRUBBER_MODEL_DIR"
#: Environment variable giving ONNX Runtime's intra-op thread count.
THREADS_ENV: Final = "SCRUBBER_THREADS"
#: Frames per inference run unless the caller says otherwise.
DEFAULT_BATCH_SIZE: Final = 32
#: Most intra-op threads taken by default (a small model gains little beyond it).
DEFAULT_MAX_THREADS: Final = 4
#: Frame digests :class:`FrameBatcher` remembers, to score repeats across instances once.
DEFAULT_CACHE_SIZE: Final = 65_536

#: Where the classifier runs: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
Device = Literal["auto", "cpu", "cuda"]

_CUDA: Final = "CUDAExecutionProvider"
_CPU: Final = "CPUExecutionProvider"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_FIX_MANIFEST = (
    "Re-export the model with its manifest (see training/), or restore both files from the "
    "release they came from."
)

K = TypeVar("K", bound=Hashable)


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def _lookup(data: object, dotted: str, source: Path) -> object:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(
                f"The classifier manifest {source} lacks the required key {dotted!r}. "
                + _FIX_MANIFEST
            )
        node = node[part]
    return node


def _wrong_type(dotted: str, source: Path, expected: str) -> ConfigError:
    return ConfigError(
        f"The classifier manifest {source} has {dotted!r} of the wrong type (expected {expected}). "
        + _FIX_MANIFEST
    )


def _string(data: object, dotted: str, source: Path) -> str:
    value = _lookup(data, dotted, source)
    if not isinstance(value, str) or not value.strip():
        raise _wrong_type(dotted, source, "a non-empty string")
    return value.strip()


def _number(data: object, dotted: str, source: Path) -> float:
    value = _lookup(data, dotted, source)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(dotted, source, "a number")
    return float(value)


def _integer(data: object, dotted: str, source: Path) -> int:
    value = _lookup(data, dotted, source)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _wrong_type(dotted, source, "a positive integer")
    return value


def _object(data: object, dotted: str, source: Path) -> dict[str, Any]:
    value = _lookup(data, dotted, source)
    if not isinstance(value, dict):
        raise _wrong_type(dotted, source, "a JSON object")
    return value


def _strings(data: object, dotted: str, source: Path) -> tuple[str, ...]:
    value = _lookup(data, dotted, source)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _wrong_type(dotted, source, "a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Manifest:
    """What the manifest ``text_classifier.json`` says about the shipped classifier.

    Attributes
    ----------
    name, version : str
        The model's name (``"text-classifier"``) and version.
    file : str
        The ONNX file's name, in the same folder as the manifest.
    sha256 : str
        The ONNX file's SHA-256 digest, lower-case hex.
    input_name : str
        Name of the graph's one input.
    channels : tuple of str
        The input's channels, in order; always :data:`~scrubber.detect.model_input.CHANNELS`.
    size : int
        Side of the square input, in cells.
    dtype : str
        The input's element type; always ``"float32"``.
    output_name : str
        Name of the graph's output (probabilities, shape ``[batch]``).
    thresholds : Thresholds
        Score thresholds chosen on validation data (see :mod:`scrubber.detect.routing`).
    training, metrics : Mapping
        Provenance (data seed and version, recipe) and measured quality, as the manifest has them.
    directory : Path
        The folder the manifest was read from.
    """

    name: str
    version: str
    file: str
    sha256: str
    input_name: str
    channels: tuple[str, ...]
    size: int
    dtype: str
    output_name: str
    thresholds: Thresholds
    training: Mapping[str, Any] = field(compare=False, repr=False)
    metrics: Mapping[str, Any] = field(compare=False, repr=False)
    directory: Path

    @property
    def model_path(self) -> Path:
        """Path of the ONNX file."""
        return self.directory / self.file

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> Manifest:
        """Read and check ``text_classifier.json`` in ``directory``.

        Parameters
        ----------
        directory : str or os.PathLike
            The model folder.

        Returns
        -------
        Manifest
            The checked manifest.

        Raises
        ------
        ConfigError
            If the manifest is missing, unreadable, not JSON, lacks a required key, has one of the
            wrong type, or describes an input scrubber does not make.
        """
        folder = Path(directory)
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise ConfigError(
                f"No classifier manifest at {path}. The model folder must hold {MANIFEST_NAME} "
                f"and the ONNX file it names; point {MODEL_DIR_ENV} (or --model-dir) at it."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"The classifier manifest {path} cannot be read ({exc.strerror}); check its "
                "permissions."
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"The classifier manifest {path} is not UTF-8 text. " + _FIX_MANIFEST
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"The classifier manifest {path} is not valid JSON (line {exc.lineno}, column "
                f"{exc.colno}). " + _FIX_MANIFEST
            ) from None
        return cls.from_dict(data, directory=folder, source=path)

    @classmethod
    def from_dict(
        cls, data: object, *, directory: str | os.PathLike[str], source: Path | None = None
    ) -> Manifest:
        """Check a parsed manifest.

        Parameters
        ----------
        data : object
            The parsed JSON.
        directory : str or os.PathLike
            The folder the model file is in.
        source : Path, optional
            Where the manifest came from, for error messages.

        Returns
        -------
        Manifest
            The checked manifest.

        Raises
        ------
        ConfigError
            If a required key is missing or of the wrong type, the model file name is not a plain
            file name, the digest is not SHA-256 hex, the thresholds are out of range, or the input
            is not the one :func:`~scrubber.detect.model_input.model_inputs` makes.
        """
        folder = Path(directory)
        src = source if source is not None else folder / MANIFEST_NAME
        if not isinstance(data, dict):
            raise _wrong_type("(top level)", src, "a JSON object")
        file = _string(data, "file", src)
        if Path(file).name != file or file in (".", ".."):
            raise ConfigError(
                f"The classifier manifest {src} names a model file that is not a plain file name "
                "in the manifest's folder. " + _FIX_MANIFEST
            )
        sha256 = _string(data, "sha256", src)
        if not _SHA256.fullmatch(sha256):
            raise _wrong_type("sha256", src, "64 hexadecimal digits")
        channels = _strings(data, "input.channels", src)
        if channels != tuple(CHANNELS):
            raise ConfigError(
                f"The classifier in {folder} was trained on input channels {list(channels)}, but "
                f"this version of scrubber makes {list(CHANNELS)}. Use a model exported for this "
                "version of scrubber."
            )
        dtype = _string(data, "input.dtype", src)
        if dtype != "float32":
            raise ConfigError(
                f"The classifier manifest {src} gives input.dtype {dtype!r}; scrubber feeds "
                "float32. " + _FIX_MANIFEST
            )
        try:
            thresholds = Thresholds(
                _number(data, "thresholds.low", src), _number(data, "thresholds.high", src)
            )
        except ConfigError as exc:
            raise ConfigError(f"The classifier manifest {src}: {exc}") from None
        return cls(
            name=_string(data, "name", src),
            version=_string(data, "version", src),
            file=file,
            sha256=sha256.lower(),
            input_name=_string(data, "input.name", src),
            channels=channels,
            size=_integer(data, "input.size", src),
            dtype=dtype,
            output_name=_string(data, "output.name", src),
            thresholds=thresholds,
            training=_object(data, "training", src),
            metrics=_object(data, "metrics", src),
            directory=folder,
        )


def default_model_dir() -> Path:
    """Return the folder the classifier is loaded from when none is given.

    Returns
    -------
    Path
        ``$SCRUBBER_MODEL_DIR`` when set, else ``models/`` at the root of the source tree this
        package sits in.

    Raises
    ------
    ConfigError
        If that folder does not exist.
    """
    configured = os.environ.get(MODEL_DIR_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"{MODEL_DIR_ENV} names {path}, which is not a folder. Point it at the folder "
                f"holding {MANIFEST_NAME} and the model, or unset it."
            )
        return path
    path = Path(__file__).resolve().parents[2] / "models"
    if not path.is_dir():
        raise ConfigError(
            f"No model folder at {path} (where scrubber looks when {MODEL_DIR_ENV} is not set). "
            f"Set {MODEL_DIR_ENV} to the folder holding {MANIFEST_NAME} and the model."
        )
    return path


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _resolve_threads(threads: int | None) -> int:
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError("threads must be a positive integer (or None for the default).")
        return threads
    configured = os.environ.get(THREADS_ENV, "").strip()
    if configured:
        try:
            value = int(configured)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(
                f"{THREADS_ENV} is not a positive integer; set it to the number of threads "
                "ONNX Runtime may use, or unset it."
            )
        return value
    return min(_usable_cores(), DEFAULT_MAX_THREADS)


def check_device(device: str) -> None:
    """Refuse a device this machine's ONNX Runtime cannot use, before any work starts.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        The device asked for.

    Raises
    ------
    ConfigError
        If ``device`` is unknown, or ``cuda`` is asked for without a CUDA execution provider.
    """
    import onnxruntime  # type: ignore[import-untyped]

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"Unknown device {device!r}; choose 'auto', 'cpu' or 'cuda'.")
    _providers(onnxruntime.get_available_providers(), device)


def cuda_available() -> bool:
    """Tell whether this machine's ONNX Runtime offers the CUDA execution provider.

    Returns
    -------
    bool
        ``True`` when ``CUDAExecutionProvider`` is among the available providers (whether a
        GPU then starts is known only when a session is made).
    """
    import onnxruntime

    return _CUDA in onnxruntime.get_available_providers()


_preloaded: list[bool] = []


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip packages, where ONNX Runtime's GPU build needs them.

    ``pip install onnxruntime-gpu[cuda,cudnn]`` installs the CUDA 13 runtime and cuDNN as Python
    packages, which the dynamic loader does not search: without this, the CUDA execution
    provider fails to start (``libcublasLt.so.13: cannot open shared object file``) unless
    ``LD_LIBRARY_PATH`` names their folders or torch was imported first. ONNX Runtime's own
    ``preload_dlls`` finds and loads them; it does nothing for CPU builds and older releases lack
    it. Called once per process, before the first session that may use CUDA; what it prints
    goes to the debug log, and a failure is left for the session's own check to report.
    """
    if _preloaded:
        return
    _preloaded.append(True)
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None or _CUDA not in ort.get_available_providers():
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except Exception as exc:  # a missing folder or library: the session reports CUDA missing
        logger.debug("preloading CUDA libraries failed: %s", type(exc).__name__)
    if printed.getvalue().strip():
        logger.debug("ONNX Runtime preloading CUDA libraries: %s", printed.getvalue().strip())


def _providers(available: Sequence[str], device: str) -> list[str]:
    if device == "cuda" and _CUDA not in available:
        raise ConfigError(
            "device 'cuda' was asked for, but ONNX Runtime offers no CUDA execution provider "
            "(the CPU-only onnxruntime package is installed, or no GPU build). Install "
            "onnxruntime-gpu with a matching CUDA, or use device 'auto' or 'cpu'."
        )
    if device in ("auto", "cuda") and _CUDA in available:
        return [_CUDA, _CPU]
    return [_CPU]


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def _check_io(session: Any, manifest: Manifest, path: Path) -> None:
    """Check the session's input and output against the manifest."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    fix = "Re-export the model with the contract scrubber expects (see training/)."
    if [i.name for i in inputs] != [manifest.input_name]:
        raise ConfigError(
            f"The classifier model {path} takes inputs {[i.name for i in inputs]}, but its "
            f"manifest says one input named {manifest.input_name!r}. {fix}"
        )
    if [o.name for o in outputs] != [manifest.output_name]:
        raise ConfigError(
            f"The classifier model {path} gives outputs {[o.name for o in outputs]}, but its "
            f"manifest says one output named {manifest.output_name!r}. {fix}"
        )
    shape = list(inputs[0].shape or [])
    expected = [len(CHANNELS), manifest.size, manifest.size]
    if len(shape) != 4 or [_static(d) for d in shape[1:]] != expected:
        raise ConfigError(
            f"The classifier model's input has shape {shape}, but scrubber feeds "
            f"[batch, {', '.join(map(str, expected))}]. {fix}"
        )
    if _static(shape[0]) is not None:
        raise ConfigError(
            f"The classifier model's input has a fixed batch size ({shape[0]}); scrubber needs a "
            f"dynamic batch axis. {fix}"
        )
    if inputs[0].type != "tensor(float)" or outputs[0].type != "tensor(float)":
        raise ConfigError(
            f"The classifier model's input or output is not float32 ({inputs[0].type}, "
            f"{outputs[0].type}). {fix}"
        )
    out_shape = list(outputs[0].shape or [])
    if len(out_shape) != 1:
        raise ConfigError(
            f"The classifier model's output has shape {out_shape}; scrubber expects [batch] "
            f"(one probability per frame). {fix}"
        )


def load_classifier(
    model_dir: str | os.PathLike[str] | None = None,
    *,
    device: Device = "auto",
    threads: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TextClassifier:
    """Load the burned-in-text classifier, checked against its manifest.

    Parameters
    ----------
    model_dir : str or os.PathLike, optional
        Folder holding ``text_classifier.json`` and the model; :func:`default_model_dir` if
        omitted.
    device : {"auto", "cpu", "cuda"}, optional
        ``"auto"`` runs on CUDA when ONNX Runtime offers it and can use it, else on the CPU;
        ``"cuda"`` insists on CUDA.
    threads : int, optional
        ONNX Runtime intra-op threads; else ``$SCRUBBER_THREADS``, else the usable cores up to 4.
    batch_size : int, optional
        Most frames per inference run.

    Returns
    -------
    TextClassifier
        The classifier, ready to score.

    Raises
    ------
    ModelIntegrityError
        If the model file's SHA-256 digest differs from the manifest's.
    ConfigError
        If the folder, manifest or model is missing or invalid, ONNX Runtime cannot load the
        model, the model's input or output differs from the manifest, ``device="cuda"`` cannot be
        honoured, or ``threads``, ``$SCRUBBER_THREADS`` or ``batch_size`` is not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size must be a positive integer.")
    intra_threads = _resolve_threads(threads)
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"Unknown device {device!r}; choose 'auto', 'cpu' or 'cuda'.")
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    if not folder.is_dir():
        raise ConfigError(
            f"The model folder {folder} does not exist; give the folder holding "
            f"{MANIFEST_NAME} and the model."
        )
    manifest = Manifest.read(folder)
    path = manifest.model_path
    if not path.is_file():
        raise ConfigError(
            f"The classifier manifest names the model file {manifest.file}, but {path} does not "
            "exist. " + _FIX_MANIFEST
        )
    try:
        model = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"The classifier model {path} cannot be read ({exc.strerror}); check its permissions."
        ) from None
    # The bytes checked are the bytes loaded: no window for the file to change in between.
    if hashlib.sha256(model).hexdigest() != manifest.sha256:
        raise ModelIntegrityError(
            f"The classifier model {path} does not match the SHA-256 digest in its manifest: the "
            "file was damaged, replaced or edited. Restore the model and manifest from the same "
            "release (or re-export both); scrubber will not run an unverified model."
        )

    import onnxruntime as ort

    providers = _providers(ort.get_available_providers(), device)
    if _CUDA in providers:
        preload_cuda_libraries()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads must not spin: the classifier runs between CPU-bound steps (render,
    # model input, OCR) in the same process and beside other workers, and spinning threads take
    # the cores those need (measured: 1.8x end to end at 2 threads, see bench_classifier.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not our logs
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # ONNX Runtime's own exception types derive from Exception only
        raise ConfigError(
            f"ONNX Runtime cannot load the classifier model {path} ({type(exc).__name__}). "
            "The file may not be ONNX, or need a newer ONNX Runtime. " + _FIX_MANIFEST
        ) from exc
    used = list(session.get_providers())
    if device == "cuda" and _CUDA not in used:
        raise ConfigError(
            "device 'cuda' was asked for, but ONNX Runtime could not start its CUDA execution "
            "provider (CUDA or cuDNN libraries missing or mismatched, or no GPU visible). Fix the "
            "CUDA installation, or use device 'auto' or 'cpu'."
        )
    if _CUDA in providers and _CUDA not in used:
        logger.warning("CUDA execution provider unavailable; the classifier runs on the CPU")
    _check_io(session, manifest, path)
    classifier = TextClassifier(session, manifest, threads=intra_threads, batch_size=batch_size)
    logger.info(
        "loaded classifier %s %s on %s with %d threads",
        manifest.name,
        manifest.version,
        ",".join(classifier.providers),
        intra_threads,
    )
    return classifier


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


class _Session(Protocol):
    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[Any]: ...

    def get_providers(self) -> list[str]: ...


@dataclass(frozen=True)
class ClassifierStats:
    """How much work a :class:`TextClassifier` has done (counts only, safe for metrics).

    Attributes
    ----------
    runs : int
        Inference runs (batches sent to ONNX Runtime).
    frames : int
        Frames scored by the model (repeats that were deduplicated do not count).
    """

    runs: int = 0
    frames: int = 0


def frame_digest(view: np.ndarray) -> bytes:
    """Digest that tells frames apart: BLAKE2b-128 of the shape, element type and bytes.

    Parameters
    ----------
    view : numpy.ndarray
        A frame (any layout; non-contiguous arrays are copied first).

    Returns
    -------
    bytes
        16 bytes, equal for frames of equal shape, dtype and values.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{view.shape}|{view.dtype.str}|".encode("ascii"))
    digest.update(np.ascontiguousarray(view).reshape(-1).view(np.uint8).data)
    return digest.digest()


class TextClassifier:
    """The loaded classifier: scores frames for burned-in text.

    Made by :func:`load_classifier`; safe to share between threads (ONNX Runtime sessions are).

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        A session on the model the manifest describes, already checked.
    manifest : Manifest
        The model's manifest.
    threads : int
        The session's intra-op thread count.
    batch_size : int, optional
        Most frames per inference run.
    """

    def __init__(
        self,
        session: _Session,
        manifest: Manifest,
        *,
        threads: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._session = session
        self.manifest = manifest
        self.threads = threads
        self.batch_size = batch_size
        self.providers: tuple[str, ...] = tuple(session.get_providers())
        self._lock = threading.Lock()
        self._runs = 0
        self._frames = 0

    @property
    def thresholds(self) -> Thresholds:
        """The score thresholds from the manifest."""
        return self.manifest.thresholds

    @property
    def device(self) -> str:
        """``"cuda"`` when the CUDA execution provider runs the model, else ``"cpu"``."""
        return "cuda" if self.providers and self.providers[0] == _CUDA else "cpu"

    @property
    def stats(self) -> ClassifierStats:
        """Inference runs and frames scored so far."""
        with self._lock:
            return ClassifierStats(runs=self._runs, frames=self._frames)

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch of model inputs.

        Parameters
        ----------
        batch : numpy.ndarray
            Shape ``(n, 4, size, size)``: ``float32`` scaled to [0, 1], as
            :func:`~scrubber.detect.model_input.model_inputs` makes it, or the raw ``uint8``
            inputs of :func:`~scrubber.detect.model_input.model_input` (scaled here, a chunk at
            a time, exactly as ``model_inputs`` scales them: a quarter of the memory while they
            wait, and of the bytes when they travel to a shared inference process). Run in
            chunks of :attr:`batch_size`.

        Returns
        -------
        numpy.ndarray
            ``float32``, shape ``(n,)``: per frame, the probability that it carries burned-in text.

        Raises
        ------
        ValueError
            If ``batch`` is not a ``float32`` or ``uint8`` array of that shape.
        ConfigError
            If the model returns something other than one probability per frame.
        """
        self._check_batch(batch)
        count = batch.shape[0]
        scores = np.empty(count, np.float32)
        for start in range(0, count, self.batch_size):
            chunk = batch[start : start + self.batch_size]
            scores[start : start + len(chunk)] = self._run(chunk)
        return scores

    def _check_batch(self, batch: np.ndarray) -> None:
        expected = (len(CHANNELS), self.manifest.size, self.manifest.size)
        if not isinstance(batch, np.ndarray) or batch.dtype not in (np.float32, np.uint8):
            raise ValueError(
                "score_batch expects a float32 array from model_inputs (or uint8 from "
                f"model_input); got {getattr(batch, 'dtype', type(batch).__name__)}"
            )
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(
                f"score_batch expects shape (n, {', '.join(map(str, expected))}); got {batch.shape}"
            )

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """Run the model on one chunk (``float32`` scaled, or raw ``uint8`` scaled here)."""
        chunk = scale_inputs(chunk) if chunk.dtype == np.uint8 else np.ascontiguousarray(chunk)
        result = np.asarray(
            self._session.run([self.manifest.output_name], {self.manifest.input_name: chunk})[0]
        )
        if result.shape != (len(chunk),):
            raise ConfigError(
                f"The classifier returned shape {result.shape} for {len(chunk)} frames; a "
                "model must give one probability per frame. Re-export it (see training/)."
            )
        with self._lock:
            self._runs += 1
            self._frames += len(chunk)
        return result

    def score_views(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """Score rendered frames, identical ones once.

        Parameters
        ----------
        views : sequence of numpy.ndarray
            Rendered frames (``uint8``, greyscale or RGB), as
            :func:`scrubber.render.render_frame` returns them.

        Returns
        -------
        numpy.ndarray
            ``float32``, shape ``(len(views),)``: one probability per view, in order.

        Raises
        ------
        ValueError
            If a view is not a rendered frame (see
            :func:`~scrubber.detect.model_input.model_input`).
        """
        batcher: FrameBatcher[int] = FrameBatcher(self)
        scores: dict[int, float] = {}
        for index, view in enumerate(views):
            scores.update(batcher.add(index, view))
        scores.update(batcher.flush())
        return np.array([scores[index] for index in range(len(views))], dtype=np.float32)

    def batcher(self, *, cache_size: int = DEFAULT_CACHE_SIZE) -> FrameBatcher[Any]:
        """Make a :class:`FrameBatcher` that feeds this classifier.

        Parameters
        ----------
        cache_size : int, optional
            How many frame digests to remember across batches.

        Returns
        -------
        FrameBatcher
            A new, empty batcher.
        """
        return FrameBatcher(self, cache_size=cache_size)


class FrameBatcher(Generic[K]):
    """Collects frames from many instances and scores them in full batches, repeats once.

    Each frame is reduced to its model input when added (so a batcher holds at most
    ``batch_size`` ``uint8`` inputs of 256 KiB, never the full-size frames) and scored as soon as
    ``batch_size`` distinct frames wait. A frame identical to one waiting or already scored (the
    last ``cache_size`` distinct frames are remembered) is not scored again: its key gets the same
    score. Every key's score is handed back exactly once, by the :meth:`add` that completed it or
    by :meth:`flush`.

    If scoring raises, the waiting frames stay queued: a later :meth:`flush` tries them again.
    Not thread-safe: feed one batcher from one thread.

    Parameters
    ----------
    classifier : TextClassifier
        The classifier that scores the frames.
    batch_size : int, optional
        Distinct frames per inference run; the classifier's own by default.
    cache_size : int, optional
        Digests of scored frames to remember, to score repeats across batches once; 0 remembers
        none.

    Examples
    --------
    >>> batcher = classifier.batcher()  # doctest: +SKIP
    >>> for key, view in frames:  # doctest: +SKIP
    ...     ready.update(batcher.add(key, view))
    >>> ready.update(batcher.flush())  # doctest: +SKIP
    """

    def __init__(
        self,
        classifier: TextClassifier,
        *,
        batch_size: int | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        size = classifier.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError("batch_size must be a positive integer.")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError("cache_size must be a non-negative integer.")
        self._classifier = classifier
        self.batch_size = size
        self.cache_size = cache_size
        self._inputs: list[np.ndarray] = []
        self._digests: list[bytes] = []
        self._waiting: dict[bytes, list[K]] = {}
        self._keys: set[K] = set()
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self.frames_added = 0
        """Frames added so far."""
        self.frames_scored = 0
        """Distinct frames sent to the model so far."""

    @property
    def pending(self) -> int:
        """Keys whose scores have not been handed back yet."""
        return len(self._keys)

    def add(self, key: K, view: np.ndarray) -> dict[K, float]:
        """Queue one rendered frame under ``key``.

        Parameters
        ----------
        key : hashable
            How the caller names the frame, e.g. ``(instance, frame_index)``; unique among the
            keys still pending.
        view : numpy.ndarray
            The rendered frame (see :meth:`TextClassifier.score_views`).

        Returns
        -------
        dict
            Scores that became known by this call: ``{key: score}`` at once for a frame seen
            before, every waiting key's score when this frame filled a batch, else empty.

        Raises
        ------
        ValueError
            If ``key`` is already pending, or ``view`` is not a rendered frame (nothing is queued
            then).
        """
        if key in self._keys:
            raise ValueError("FrameBatcher.add: this key is already pending; keys must be unique")
        digest = frame_digest(view)
        known = self._cache.get(digest)
        if known is not None:
            self._cache.move_to_end(digest)
            self.frames_added += 1
            return {key: known}
        waiting = self._waiting.get(digest)
        if waiting is None:
            reduced = model_input(view, self._classifier.manifest.size)
            self._waiting[digest] = [key]
            self._digests.append(digest)
            self._inputs.append(reduced)
        else:
            waiting.append(key)
        self._keys.add(key)
        self.frames_added += 1
        if len(self._inputs) >= self.batch_size:
            return self._score()
        return {}

    def flush(self) -> dict[K, float]:
        """Score every waiting frame now, however few.

        Returns
        -------
        dict
            ``{key: score}`` for every key still pending.
        """
        return self._score()

    def _score(self) -> dict[K, float]:
        if not self._inputs:
            return {}
        scores = self._classifier.score_batch(np.stack(self._inputs))
        results: dict[K, float] = {}
        for digest, score in zip(self._digests, scores.tolist(), strict=True):
            for key in self._waiting.pop(digest):
                results[key] = score
            self._remember(digest, score)
        self.frames_scored += len(self._inputs)
        self._inputs.clear()
        self._digests.clear()
        self._keys.difference_update(results)
        return results

    def _remember(self, digest: bytes, score: float) -> None:
        if self.cache_size == 0:
            return
        self._cache[digest] = score
        self._cache.move_to_end(digest)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
