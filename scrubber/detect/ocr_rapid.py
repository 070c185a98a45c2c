"""The ``rapidocr`` OCR engine: PP-OCR text detection and recognition on ONNX Runtime.

RapidOCR 3.x ships its default models inside the wheel (PP-OCRv6 small detection and recognition,
the PP-OCR mobile direction classifier; Apache-2.0). scrubber hands it those files by path, so a
configuration can never make it reach for the network (asking RapidOCR for a model it does not
bundle starts a download, which fails on an air-gapped host), and it refuses to start when they
are missing. Every detected box is kept whatever the recogniser's confidence: text that cannot be
read is still text to black out.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np

from scrubber.detect.ocr import OcrUnavailableError, TextRegion

__all__ = ["MODEL_FILES", "RapidOcrEngine"]

#: The model files RapidOCR bundles, by stage.
MODEL_FILES: Final = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


def _model_dir() -> Path:
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise OcrUnavailableError(
            "the rapidocr package is not installed: pip install -e . from the project root "
            "installs it (it is a core dependency)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _device(device: str) -> str:
    """Resolve ``auto``/``cpu``/``cuda`` against the CUDA provider ONNX Runtime offers."""
    if device not in ("auto", "cpu", "cuda"):
        raise OcrUnavailableError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return "cpu"
    import onnxruntime  # type: ignore[import-untyped]

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        from scrubber.detect.classifier import preload_cuda_libraries

        preload_cuda_libraries()
        return "cuda"
    if device == "cuda":
        raise OcrUnavailableError(
            "device cuda was asked for RapidOCR, but ONNX Runtime offers no CUDA execution "
            "provider: install onnxruntime-gpu with a matching CUDA, or use device cpu"
        )
    return "cpu"


class RapidOcrEngine:
    """PP-OCR detection and recognition through RapidOCR on ONNX Runtime (CPU).

    Parameters
    ----------
    threads : int, optional
        ONNX Runtime intra-op threads (default: the machine's cores, at most 4).
    device : {"auto", "cpu", "cuda"}, optional
        ``cpu`` (the default) runs on the CPU; ``cuda`` on ONNX Runtime's CUDA execution
        provider (onnxruntime-gpu), ``auto`` on CUDA where ONNX Runtime offers it.

    Raises
    ------
    OcrUnavailableError
        If rapidocr or one of its bundled model files is missing, or ``cuda`` is asked for
        where ONNX Runtime offers no CUDA execution provider.
    """

    name = "rapidocr"
    #: Frames with a longer side are read in tiles (RapidOCR would shrink larger inputs itself).
    max_side = 2048

    def __init__(self, threads: int | None = None, device: str = "cpu") -> None:
        folder = self.check()
        threads = threads or min(4, os.cpu_count() or 1)
        self.device = _device(device)
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.text_score": 0.0,
            "Global.max_side_len": self.max_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": self.device == "cuda",
        }
        for stage, name in MODEL_FILES.items():
            params[f"{stage}.model_path"] = str(folder / name)
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OcrUnavailableError(
                f"rapidocr cannot be imported ({type(exc).__name__}); reinstall it: "
                "pip install -e . from the project root"
            ) from None
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self._ocr = RapidOCR(params=params)
        self._lock = threading.Lock()
        self.threads = threads

    @staticmethod
    def check() -> Path:
        """Find RapidOCR's bundled model files without loading them.

        Returns
        -------
        pathlib.Path
            The folder holding them.

        Raises
        ------
        OcrUnavailableError
            If rapidocr or one of the files is missing.
        """
        folder = _model_dir()
        missing = [name for name in MODEL_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise OcrUnavailableError(
                f"rapidocr's bundled model files are missing ({', '.join(missing)}) in {folder}; "
                "reinstall the rapidocr wheel (scrubber never downloads models)"
            )
        return folder

    def read(self, view: np.ndarray) -> list[TextRegion]:
        """Find and read the text of one rendered frame or tile.

        Parameters
        ----------
        view : numpy.ndarray
            ``uint8`` frame, greyscale or RGB.

        Returns
        -------
        list of TextRegion
            One region per detected line, in ``view``'s pixel coordinates.
        """
        if view.ndim == 2:
            bgr = np.repeat(view[..., None], 3, axis=2)
        else:
            bgr = np.ascontiguousarray(view[..., ::-1])
        with self._lock:  # RapidOCR keeps per-call state on the instance
            output = self._ocr(bgr)
        boxes = getattr(output, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        texts = getattr(output, "txts", None) or ("",) * len(boxes)
        scores = getattr(output, "scores", None) or (0.0,) * len(boxes)
        return [
            TextRegion.from_polygon(polygon, text, score)
            for polygon, text, score in zip(boxes, texts, scores, strict=False)
        ]
