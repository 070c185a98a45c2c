"""Where the shipped classifier loses recall: fit, generalisation and text size at model input.

    python -m training.diagnose [--model-dir models] [--train 4000] [--json OUT]

Scores the cached synthetic splits (generated if missing, as ``make train`` does) with the
shipped ONNX model and prints, per split, the ROC AUC and the recall at 2% false positives
(issue 4's bar is 99.5% on ``eval``):

* ``train`` (its first ``--train`` frames): how well the network fits what it learnt from. A
  recall here far below the bar means the network underfits: more capacity or epochs, not more
  data, is the next step.
* ``val`` (training fonts, another seed) and ``eval`` (held-out fonts): the gap to ``train`` is
  generalisation; the gap between them is the held-out fonts.

For ``val`` and ``eval`` it then splits the text frames by the height of their tallest line at
the model's input (the frame is reduced to ``INPUT_SIZE`` squared, so 8-pixel text on a
2,048-pixel frame is 1 cell tall) and by background, with the recall of each group at the 2%-FPR
threshold: misses that pile up in the smallest group say the input resolution, not the network,
is what loses them. They are also split by the text's orientation (lines drawn across, lines
rotated 90 degrees, or both on one frame). Only scores, counts and sizes are printed.

``--misses DIR`` also writes contact sheets of the ``eval`` text frames missed at the 2%-FPR
threshold (``misses-NN.png``, eight frames a sheet): each frame's mean and maximum luma channels
as the network sees them, its text boxes outlined in red, its index, background and score
written above. The frames are synthetic, so the sheets hold no patient data.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from training.train import (
    CACHE,
    EVAL_SEED,
    TRAIN_SEED,
    VAL_SEED,
    build_split,
    recall_at_fpr,
    roc,
)

ROOT = Path(__file__).resolve().parent.parent

#: Groups of the tallest text line's height at model input, in cells: [low, high).
HEIGHT_BINS: tuple[tuple[float, float], ...] = (
    (0.0, 4.0),
    (4.0, 8.0),
    (8.0, 16.0),
    (16.0, 32.0),
    (32.0, float("inf")),
)


def tallest_line(boxes: Sequence[Sequence[float]]) -> float:
    """Height of a frame's tallest text line in model-input cells (lines may be rotated).

    Parameters
    ----------
    boxes : sequence of ``[x, y, w, h]``
        The frame's text lines in model-input cells.

    Returns
    -------
    float
        The largest of each line's shorter side; 0 for a frame without text.
    """
    return max((min(float(w), float(h)) for _x, _y, w, h in boxes), default=0.0)


#: A text line taller than this many times its width was drawn rotated 90 degrees.
_VERTICAL_ASPECT: Final = 1.5


def orientation(boxes: Sequence[Sequence[float]]) -> str:
    """How a frame's text lines run: ``across``, ``rotated`` (90 degrees) or ``both``.

    Parameters
    ----------
    boxes : sequence of ``[x, y, w, h]``
        The frame's text lines.

    Returns
    -------
    str
        ``rotated`` when every line is more than 1.5 times as tall as wide, ``across`` when none
        is, ``both`` otherwise; ``none`` for a frame without text.
    """
    if not boxes:
        return "none"
    rotated = [float(h) > _VERTICAL_ASPECT * float(w) for _x, _y, w, h in boxes]
    return "rotated" if all(rotated) else "both" if any(rotated) else "across"


def groups(
    scores: np.ndarray,
    labels: np.ndarray,
    keys: Sequence[str],
    threshold: float,
    order: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Recall of the text frames of each group at ``threshold``.

    Parameters
    ----------
    scores, labels : numpy.ndarray
        One score and one label (1: text) per frame.
    keys : sequence of str
        The group of each frame (ignored for frames without text).
    threshold : float
        Frames scoring at or above it are flagged (as in ``recall_at_fpr``).
    order : sequence of str, optional
        The order of the groups (default: sorted); groups it does not name follow, sorted.

    Returns
    -------
    dict
        Per group: ``frames`` (text frames), ``missed`` and ``recall``.
    """
    out: dict[str, dict[str, Any]] = {}
    present = {k for k, y in zip(keys, labels, strict=True) if y == 1}
    for key in [k for k in order if k in present] + sorted(present - set(order)):
        chosen = np.array([k == key for k in keys]) & (labels == 1)
        frames = int(chosen.sum())
        missed = int((scores[chosen] < threshold).sum())
        out[key] = {"frames": frames, "missed": missed, "recall": 1.0 - missed / frames}
    return out


def _bin_name(low: float, high: float) -> str:
    return f"{low:g}-{high:g}" if high != float("inf") else f">={low:g}"


def _height_key(height: float) -> str:
    for low, high in HEIGHT_BINS:
        if low <= height < high:
            return _bin_name(low, high)
    return "?"


def split_report(split: dict[str, Any], scores: np.ndarray) -> dict[str, Any]:
    """AUC, recall at 2% false positives and, where boxes are known, recall per group.

    Parameters
    ----------
    split : dict
        A split as :func:`training.train.build_split` returns it: ``labels``, ``kinds`` and
        ``boxes`` (``None``: leave out the per-group figures).
    scores : numpy.ndarray
        Scores of the split's first ``len(scores)`` frames.

    Returns
    -------
    dict
        ``frames``, ``roc_auc``, ``recall_at_fpr_2pct``, ``threshold_at_fpr_2pct`` and, with
        boxes, ``by_text_height_cells`` and ``by_background`` (see :func:`groups`).
    """
    labels = np.asarray(split["labels"], np.int64)[: len(scores)]
    _fpr, _tpr, _thr, auc = roc(scores, labels)
    recall, threshold = recall_at_fpr(scores, labels, 0.02)
    report: dict[str, Any] = {
        "frames": len(scores),
        "roc_auc": auc,
        "recall_at_fpr_2pct": recall,
        "threshold_at_fpr_2pct": threshold,
    }
    boxes = split.get("boxes")
    if boxes is not None:
        heights = [_height_key(tallest_line(b)) for b in boxes[: len(scores)]]
        order = [_bin_name(low, high) for low, high in HEIGHT_BINS]
        report["by_text_height_cells"] = groups(scores, labels, heights, threshold, order)
        report["by_background"] = groups(scores, labels, split["kinds"][: len(scores)], threshold)
        turns = [orientation(b) for b in boxes[: len(scores)]]
        report["by_orientation"] = groups(
            scores, labels, turns, threshold, ("across", "rotated", "both")
        )
    return report


def write_misses(
    split: dict[str, Any], scores: np.ndarray, threshold: float, folder: Path, per_sheet: int = 8
) -> list[Path]:
    """Write contact sheets of the text frames scoring below ``threshold``.

    Parameters
    ----------
    split : dict
        A split with ``inputs`` (``uint8``, ``(n, channels, size, size)``), ``labels``, ``kinds``
        and ``boxes`` (model-input cells).
    scores : numpy.ndarray
        Scores of the split's first ``len(scores)`` frames.
    threshold : float
        Text frames scoring below it are missed.
    folder : pathlib.Path
        Where the sheets go (created if missing).
    per_sheet : int, optional
        Frames per sheet (two a row).

    Returns
    -------
    list of pathlib.Path
        The sheets written, in frame order; none when nothing is missed.
    """
    import cv2

    labels = np.asarray(split["labels"])[: len(scores)]
    missed = np.flatnonzero((labels == 1) & (scores < threshold))
    tiles = []
    for index in missed:
        planes = np.asarray(split["inputs"][index])
        size = planes.shape[-1]
        tile = cv2.cvtColor(np.concatenate([planes[0], planes[1]], axis=1), cv2.COLOR_GRAY2BGR)
        for x, y, w, h in split["boxes"][index]:
            for offset in (0, size):
                corner = (int(x) + offset, int(y))
                far = (int(x + w) + offset, int(y + h))
                cv2.rectangle(tile, corner, far, (0, 0, 255), 1)
        label = f"{index} {split['kinds'][index]} {scores[index]:.3f}"
        cv2.putText(tile, label, (3, 13), cv2.FONT_HERSHEY_PLAIN, 1.0, (0, 255, 0), 1)
        tiles.append(tile)
    folder.mkdir(parents=True, exist_ok=True)
    sheets = []
    for number, first in enumerate(range(0, len(tiles), per_sheet)):
        chunk = tiles[first : first + per_sheet]
        chunk += [np.zeros_like(chunk[0])] * (-len(chunk) % 2)
        rows = [np.concatenate(chunk[i : i + 2], axis=1) for i in range(0, len(chunk), 2)]
        path = folder / f"misses-{number:02d}.png"
        if not cv2.imwrite(str(path), np.concatenate(rows, axis=0)):
            raise OSError(f"cannot write {path}")
        sheets.append(path)
    return sheets


def _print(name: str, report: dict[str, Any]) -> None:
    print(
        f"{name:5s} {report['frames']:5d} frames  AUC {report['roc_auc']:.5f}  "
        f"recall at 2% FPR {report['recall_at_fpr_2pct']:.4f}"
    )
    for title in ("by_text_height_cells", "by_background", "by_orientation"):
        if title not in report:
            continue
        cells = ", ".join(
            f"{key} {g['recall']:.3f} ({g['missed']}/{g['frames']})"
            for key, g in report[title].items()
        )
        print(f"      {title.replace('_', ' ')}: {cells}")


def main(argv: Sequence[str] | None = None) -> int:
    """Score the splits with the shipped model and print where recall is lost."""
    from scrubber.detect import load_classifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--cache", type=Path, default=CACHE, help="generated splits")
    parser.add_argument("--train", type=int, default=4000, help="training frames to score")
    parser.add_argument("--train-size", type=int, default=20000, help="the cached train split")
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--eval", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=1, help="processes if splits are generated")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--misses", type=Path, help="write contact sheets of the missed eval frames here"
    )
    args = parser.parse_args(argv)

    classifier = load_classifier(args.model_dir, device="cpu")
    splits = {
        "train": build_split(
            "train", TRAIN_SEED, args.train_size, "train", args.workers, args.cache
        ),
        "val": build_split("val", VAL_SEED, args.val, "train", args.workers, args.cache),
        "eval": build_split("eval", EVAL_SEED, args.eval, "held_out", args.workers, args.cache),
    }
    limits = {"train": min(args.train, args.train_size), "val": args.val, "eval": args.eval}
    reports: dict[str, Any] = {"model": classifier.manifest.version}
    for name, split in splits.items():
        inputs = split["inputs"]
        scores = np.concatenate(
            [
                classifier.score_batch(np.asarray(inputs[i : i + 256], np.float32) / 255.0)
                for i in range(0, limits[name], 256)
            ]
        )[: limits[name]]
        report = split_report(split if name != "train" else {**split, "boxes": None}, scores)
        reports[name] = report
        _print(name, report)
        if name == "eval" and args.misses is not None:
            threshold = report["threshold_at_fpr_2pct"]
            sheets = write_misses(split, scores, threshold, args.misses)
            print(f"      {len(sheets)} contact sheet(s) of missed frames in {args.misses}")
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
