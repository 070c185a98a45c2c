"""Is burned-in text still legible? Checks shared by the corpus tests and the corpus benchmark.

A token counts as legible when an OCR engine's reading of a rendered frame contains it, fuzzily:
case, spaces and punctuation are ignored, and tokens of four or more characters match at 85%
partial similarity (OCR drops and confuses characters). Two engines read each frame: scrubber's
own and, when installed, Tesseract (Debian's tesseract-ocr), which shares nothing with it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from scrubber.detect.ocr import OcrEngine, read_text
from scrubber.dicom_io.pixels import describe_pixels, iter_frames
from scrubber.redact import black_value
from scrubber.render import render_frame
from scrubber.validate.score import token_legible


def have_tesseract() -> bool:
    """Whether the ``tesseract`` command is installed."""
    return shutil.which("tesseract") is not None


def legible(token: str, texts: list[str]) -> bool:
    """Whether ``token`` can be read in any of ``texts`` (the scorer's own rule)."""
    return token_legible(token, texts)


def tesseract_text(view: np.ndarray) -> str:
    """Tesseract's reading of a rendered frame (upscaled twice: small banner glyphs)."""
    import cv2

    grey = view if view.ndim == 2 else cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    ok, png = cv2.imencode(".png", grey)
    if not ok:
        return ""
    run = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "11"],
        input=png.tobytes(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    return run.stdout.decode("utf-8", "replace")


def leaked_tokens(ds: Any, tokens: list[str], engine: OcrEngine, tesseract: bool) -> int:
    """How many of ``tokens`` either OCR engine can still read in any frame of ``ds``."""
    description = describe_pixels(ds)
    left = set(tokens)
    for frame in iter_frames(ds):
        view = render_frame(frame, ds, description)
        texts = [" ".join(r.text for r in read_text(engine, view).regions)]
        if tesseract:
            texts.append(tesseract_text(view))
        left -= {token for token in left if legible(token, texts)}
        if not left:
            break
    return len(tokens) - len(left)


def presidio_coverage(ds: Any, corpus: Path) -> list[float]:
    """Share of each ground-truth word box that is black in the output's stored values."""
    truth = json.loads((corpus / "files/presidio/ground_truth_pixel_coords.json").read_text())
    entry = next(
        v for v in truth["files"].values() if "0_ORIGINAL_compressed.dcm" in v["applies_to"]
    )
    description = describe_pixels(ds)
    black = np.asarray(black_value(ds, description))
    frame = next(iter_frames(ds))
    shares = []
    for box in entry["boxes"]:
        region = frame[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]]
        is_black = region == black if region.ndim == 2 else np.all(region == black, axis=-1)
        shares.append(float(is_black.mean()) if is_black.size else 0.0)
    return shares
