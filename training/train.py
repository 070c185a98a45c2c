"""Reproduce the shipped burned-in text classifier: data, training, thresholds, ONNX export.

One command (``make train`` runs it)::

    python -m training.train --out models

1. Generates three synthetic splits with :mod:`training.synth` and reduces every frame with
   :func:`scrubber.detect.model_input.model_input` (the same function inference uses): ``train``
   and ``val`` drawn with the training fonts, ``eval`` with a different seed and only the held-out
   font families. The reduced inputs are cached under ``training/cache/`` (keyed by generator
   version, seed and size).
2. Trains :class:`training.model.TextClassifierNet` from scratch on the CPU (no pretrained
   weights exist to download here).
3. Picks the thresholds on ``val``: ``low`` keeps at least 99.9% of text frames above it;
   ``high`` is the score that at most 0.5% of text-free frames reach.
4. Reports ROC AUC, the ROC curve and recall at 2% false positives on ``eval``.
5. Exports ONNX (input ``frames``, output ``text_probability``) and writes the manifest (sha256,
   input spec, thresholds, seeds, metrics) and the model card into ``--out``.

Two options continue a model instead of starting afresh: ``--extra-splits K`` adds ``K`` more
training splits of ``--train`` frames (seeds from :data:`EXTRA_SEED`: same generator and fonts,
new frames), and ``--init-from DIR`` starts from the model in ``DIR`` (its manifest's sha256 is
checked; see :func:`load_onnx_weights`). The manifest records the parent's version and sha256.
``--small N`` adds ``N`` training frames of the generator's ``small`` profile (32 to 256 pixels
a side, a third of them synthetic ramps and noise), which the model input enlarges into blocks.
``--turned N`` adds ``N`` frames of the ``turned`` profile (standard frames, text blocks rotated
90 degrees half the time instead of a tenth). Every run also reports a ``small`` validation
split (``--small-val`` frames, training fonts), so a model's behaviour on such frames is on
record whether or not it trained on them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scrubber.detect.model_input import CHANNELS, INPUT_SIZE, model_input
from training.model_card import write_model_card
from training.synth import (
    GENERATOR_VERSION,
    HELD_OUT_FAMILIES,
    SMALL_PROFILE_VERSION,
    generate,
)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "training" / "cache"
MODEL_FILE = "text_classifier.onnx"
MANIFEST_FILE = "text_classifier.json"
TRAIN_SEED, VAL_SEED, EVAL_SEED = 20261122, 20261123, 20261124
#: Seed of the first extra training split (``--extra-splits``); the k-th uses this plus k.
EXTRA_SEED = 20261125
#: Seeds of the ``small`` profile's training split (``--small``) and validation split.
SMALL_SEED, SMALL_VAL_SEED = 20261126, 20261127
#: Seed of the ``turned`` profile's training split (``--turned``).
TURNED_SEED = 20261128
#: Version of a model trained from scratch: the major number follows the generator's. A model
#: continued from another (``--init-from``) takes its parent's version with the minor number raised.
MODEL_VERSION = "2.0.0"


def continued_version(parent: str) -> str:
    """Version of a model continued from the model versioned ``parent`` (minor number + 1).

    Parameters
    ----------
    parent : str
        ``MAJOR.MINOR.PATCH``.

    Returns
    -------
    str
        ``MAJOR.(MINOR + 1).0``.
    """
    major, minor, *_ = [*parent.split("."), "0", "0"]
    return f"{int(major)}.{int(minor) + 1}.0"


def _one(args: tuple[int, int, str, str]) -> tuple[np.ndarray, int, str, list[list[float]]]:
    seed, index, split, profile = args
    sample = next(generate(seed, 1, font_split=split, start=index, profile=profile))
    rows, columns = sample.view.shape[:2]
    sy, sx = INPUT_SIZE / rows, INPUT_SIZE / columns
    # text boxes in model-input cells (the input maps the frame onto INPUT_SIZE squared)
    boxes = [
        [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)]
        for x, y, w, h in sample.boxes
    ]
    return model_input(sample.view), int(sample.has_text), sample.kind, boxes


def build_split(
    name: str,
    seed: int,
    count: int,
    font_split: str,
    workers: int,
    cache: Path = CACHE,
    profile: str = "standard",
) -> dict[str, Any]:
    """Generate (or load from the cache) one split's model inputs and labels.

    Parameters
    ----------
    name : str
        Split name, used in the cache file names.
    seed : int
        Generator seed.
    count : int
        Number of frames.
    font_split : str
        ``train`` or ``held_out`` fonts.
    workers : int
        Processes used to generate.
    cache : pathlib.Path, optional
        Folder holding generated splits.
    profile : {"standard", "small", "turned"}
        The generator's frame profile (see :data:`training.synth.PROFILES`).

    Returns
    -------
    dict
        ``inputs`` (uint8 memmap, ``(count, C, S, S)``), ``labels`` (int8), ``kinds`` and
        ``boxes`` (per frame, the text lines' ``[x, y, w, h]`` in model-input cells).
    """
    cache.mkdir(parents=True, exist_ok=True)
    version = {
        "standard": f"g{GENERATOR_VERSION}",
        "small": f"small{SMALL_PROFILE_VERSION}",
        "turned": f"turned{GENERATOR_VERSION}",
    }[profile]
    stem = cache / f"{name}-{version}-s{seed}-n{count}-{INPUT_SIZE}"
    inputs_path = stem.parent / f"{stem.name}.inputs.npy"
    meta_path = stem.parent / f"{stem.name}.meta.json"
    if inputs_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if "boxes" in meta:  # caches written before the boxes were kept are generated again
            return {
                "inputs": np.load(inputs_path, mmap_mode="r"),
                "labels": np.asarray(meta["labels"], np.int8),
                "kinds": meta["kinds"],
                "boxes": meta["boxes"],
            }
    shape = (count, len(CHANNELS), INPUT_SIZE, INPUT_SIZE)
    partial = stem.parent / f"{stem.name}.partial.npy"
    inputs = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    labels = np.zeros(count, np.int8)
    kinds: list[str] = [""] * count
    boxes: list[list[list[float]]] = [[] for _ in range(count)]
    started = time.monotonic()
    jobs = [(seed, i, font_split, profile) for i in range(count)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.imap(_one, jobs, chunksize=16) if workers > 1 else map(_one, jobs)
        for i, (x, y, kind, lines) in enumerate(results):
            inputs[i], labels[i], kinds[i], boxes[i] = x, y, kind, lines
            if (i + 1) % 1000 == 0 or i + 1 == count:
                rate = (i + 1) / (time.monotonic() - started)
                print(f"  {name}: {i + 1}/{count} frames ({rate:.0f}/s)", flush=True)
    inputs.flush()
    del inputs
    partial.rename(inputs_path)
    meta_path.write_text(json.dumps({"labels": labels.tolist(), "kinds": kinds, "boxes": boxes}))
    return {
        "inputs": np.load(inputs_path, mmap_mode="r"),
        "labels": labels,
        "kinds": kinds,
        "boxes": boxes,
    }


def _scores(model: Any, inputs: np.ndarray, batch: int = 128) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            x = torch.from_numpy(np.asarray(inputs[i : i + batch], np.float32) / 255.0)
            out.append(model(x.contiguous(memory_format=torch.channels_last)).numpy())
    return np.concatenate(out)


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """ROC curve and its area.

    Parameters
    ----------
    scores : numpy.ndarray
        Predicted probabilities.
    labels : numpy.ndarray
        1 for text frames, 0 otherwise.

    Returns
    -------
    tuple
        ``(false_positive_rate, true_positive_rate, thresholds, auc)``, thresholds descending.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    tpr = np.r_[0.0, tp / max(y.sum(), 1)]
    fpr = np.r_[0.0, fp / max((1 - y).sum(), 1)]
    thresholds = np.r_[np.inf, s[distinct]]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return fpr, tpr, thresholds, auc


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> tuple[float, float]:
    """Best recall with a false-positive rate at most ``max_fpr``, and the threshold giving it."""
    fpr, tpr, thresholds, _ = roc(scores, labels)
    ok = np.nonzero(fpr <= max_fpr)[0]
    best = ok[np.argmax(tpr[ok])]
    return float(tpr[best]), float(thresholds[best])


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Recall and false-positive rate when frames scoring ``>= threshold`` are flagged.

    A rate is None when the split has no frames of that class.
    """
    flagged = scores >= threshold
    positives, negatives = labels == 1, labels == 0
    return {
        "threshold": threshold,
        "recall": float(flagged[positives].mean()) if positives.any() else None,
        "false_positive_rate": float(flagged[negatives].mean()) if negatives.any() else None,
        "missed": int((~flagged[positives]).sum()),
        "positives": int(positives.sum()),
        "negatives": int(negatives.sum()),
    }


class Frames:
    """Several cached splits' model inputs and labels read as one training set.

    Parameters
    ----------
    splits : sequence of dict
        Splits as :func:`build_split` returns them.
    """

    def __init__(self, splits: Sequence[dict[str, Any]]) -> None:
        self._inputs = [split["inputs"] for split in splits]
        self._starts = np.cumsum([0] + [len(split["labels"]) for split in splits])
        self.labels = np.concatenate([np.asarray(split["labels"], np.int8) for split in splits])

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Read the model inputs of the frames at the sorted positions ``index`` (``uint8``)."""
        parts = []
        for k, inputs in enumerate(self._inputs):
            lo, hi = self._starts[k], self._starts[k + 1]
            mine = index[(index >= lo) & (index < hi)] - lo
            if mine.size:
                parts.append(np.asarray(inputs[mine]))
        return np.concatenate(parts)


def load_onnx_weights(model: Any, path: Path) -> None:
    """Warm-start ``model`` from an exported classifier of the same architecture.

    The ONNX export folds every batch norm into the convolution before it. Each convolution gets
    the folded weight back, and its batch norm becomes the identity carrying the folded bias
    (running mean 0, running variance ``1 - eps``, scale 1), so ``model`` in eval mode computes
    exactly what the ONNX model computes. Training from there must keep the batch norms in eval
    mode (:func:`train` does, with ``init``): batch statistics would rescale every layer.

    Parameters
    ----------
    model : training.model.TextClassifierNet
        The network to fill; its width must match the exported one.
    path : pathlib.Path
        The ``.onnx`` file.

    Raises
    ------
    ValueError
        If the exported graph does not have this network's convolutions and head.
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn

    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []
    for stage in model.features:
        layers = list(stage)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d):
                norm = layers[i + 1]
                assert isinstance(norm, nn.BatchNorm2d)
                pairs.append((layer, norm))
    if len(convs) != len(pairs):
        raise ValueError(
            f"{path} has {len(convs)} convolutions, the network {len(pairs)}: not the same "
            "architecture (check --width)"
        )
    with torch.no_grad():
        for node, (conv, norm) in zip(convs, pairs, strict=True):
            weight, bias = np.array(weights[node.input[1]]), np.array(weights[node.input[2]])
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise ValueError(
                    f"{path}: a convolution of shape {weight.shape} where the network has "
                    f"{tuple(conv.weight.shape)} (check --width)"
                )
            conv.weight.copy_(torch.from_numpy(weight))
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.from_numpy(bias))
            assert norm.running_mean is not None and norm.running_var is not None
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
        model.head.weight.copy_(torch.from_numpy(np.array(weights["head.weight"])))
        model.head.bias.copy_(torch.from_numpy(np.array(weights["head.bias"])))


def _freeze_norms(model: Any) -> None:
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def train(
    frames: Frames,
    val: dict[str, Any],
    *,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    threads: int,
    width: int = 16,
    init: Path | None = None,
    small_val: dict[str, Any] | None = None,
) -> Any:
    """Train the network and return it (best validation loss kept).

    From scratch, or with ``init`` (an exported ``.onnx`` of the same width) from that model's
    weights, its batch norms frozen (see :func:`load_onnx_weights`). ``small_val`` (a split of
    the ``small`` profile) is scored after every epoch for the log; it does not choose the epoch.
    """
    import torch
    from torch.nn import functional

    from training.model import TextClassifierNet

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    model = TextClassifierNet(in_channels=len(CHANNELS), width=width)
    if init is not None:
        load_onnx_weights(model, init)
    # channels-last halves the CPU time of a training step (oneDNN's preferred layout)
    model = model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    labels = frames.labels
    steps = epochs * (len(labels) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    best_state, best_loss = None, float("inf")
    for epoch in range(epochs):
        model.train()
        if init is not None:
            _freeze_norms(model)
        order = rng.permutation(len(labels))
        started, total = time.monotonic(), 0.0
        for step in range(len(labels) // batch):
            index = np.sort(order[step * batch : (step + 1) * batch])
            x = torch.from_numpy(frames.take(index).astype(np.float32) / 255.0)
            y = torch.from_numpy(labels[index].astype(np.float32))
            if rng.random() < 0.5:
                x = torch.flip(x, dims=(3,))
            if rng.random() < 0.3:
                x = torch.flip(x, dims=(2,))
            if rng.random() < 0.2:
                x = torch.rot90(x, 1, dims=(2, 3))
            x = x.contiguous(memory_format=torch.channels_last)
            loss = functional.binary_cross_entropy_with_logits(model.logits(x), y)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += loss.item()
        val_scores = _scores(model, val["inputs"])
        eps = 1e-6
        y_val = val["labels"].astype(np.float64)
        val_loss = float(
            -np.mean(y_val * np.log(val_scores + eps) + (1 - y_val) * np.log(1 - val_scores + eps))
        )
        _, _, _, auc = roc(val_scores, val["labels"])
        recall, _ = recall_at_fpr(val_scores, val["labels"], 0.02)
        small = ""
        if small_val is not None:
            small_scores = _scores(model, small_val["inputs"])
            _, _, _, small_auc = roc(small_scores, small_val["labels"])
            small_recall, _ = recall_at_fpr(small_scores, small_val["labels"], 0.02)
            small = f", small val AUC {small_auc:.5f}, recall at 2% FPR {small_recall:.4f}"
        print(
            f"epoch {epoch + 1}/{epochs}: train loss {total / max(1, step + 1):.4f}, "
            f"val loss {val_loss:.4f}, val AUC {auc:.5f}, val recall at 2% FPR {recall:.4f}"
            f"{small}, {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    return model


def export_onnx(model: Any, path: Path) -> None:
    """Export the trained network to ONNX (dynamic batch, opset 17)."""
    import torch

    dummy = torch.zeros(1, len(CHANNELS), INPUT_SIZE, INPUT_SIZE)
    # The TorchScript exporter is deprecated in favour of torch.export, but for a plain
    # convolutional net it gives a small, stable graph without onnxscript; torch is pinned.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["frames"],
            output_names=["text_probability"],
            dynamic_axes={"frames": {0: "batch"}, "text_probability": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole reproduction; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models")
    parser.add_argument("--train", type=int, default=20000, help="training frames")
    parser.add_argument("--val", type=int, default=2000, help="validation frames")
    parser.add_argument("--eval", type=int, default=4000, help="held-out evaluation frames")
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--width", type=int, default=16, help="channels of the network's stem")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, default=CACHE, help="generated splits")
    parser.add_argument(
        "--extra-splits",
        type=int,
        default=0,
        help="further training splits of --train frames each (seeds from EXTRA_SEED)",
    )
    parser.add_argument(
        "--small",
        type=int,
        default=0,
        help="training frames of the generator's small profile (32-256 px; seed SMALL_SEED)",
    )
    parser.add_argument(
        "--turned",
        type=int,
        default=0,
        help="training frames of the generator's turned profile (half the text rotated; "
        "seed TURNED_SEED)",
    )
    parser.add_argument(
        "--small-val",
        type=int,
        default=2000,
        help="validation frames of the small profile, reported (not used to choose thresholds)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        help="start from the model in this folder (manifest + ONNX, hash-checked), same width",
    )
    parser.add_argument(
        "--recall-target",
        type=float,
        default=0.995,  # the recall bar; 0.999 put low at 0.003, OCR on ~90% of frames
        help="share of val text frames kept >= low",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="no training: recompute thresholds and metrics of the model already in --out",
    )
    args = parser.parse_args(argv)
    if args.rescore:
        counts = (args.val, args.eval, args.small_val)
        return rescore(args.out, args.cache, counts, args.recall_target, args.workers)

    import torch

    started = time.monotonic()
    print("generating synthetic splits", flush=True)
    splits = [build_split("train", TRAIN_SEED, args.train, "train", args.workers, args.cache)]
    for k in range(args.extra_splits):
        name, seed = f"train{k + 2}", EXTRA_SEED + k
        splits.append(build_split(name, seed, args.train, "train", args.workers, args.cache))
    if args.turned:
        splits.append(
            build_split(
                "turned", TURNED_SEED, args.turned, "train", args.workers, args.cache, "turned"
            )
        )
    if args.small:
        splits.append(
            build_split("small", SMALL_SEED, args.small, "train", args.workers, args.cache, "small")
        )
    val = build_split("val", VAL_SEED, args.val, "train", args.workers, args.cache)
    held = build_split("eval", EVAL_SEED, args.eval, "held_out", args.workers, args.cache)
    small_val = build_split(
        "small-val", SMALL_VAL_SEED, args.small_val, "train", args.workers, args.cache, "small"
    )
    parent = None
    if args.init_from is not None:
        from scrubber.detect import load_classifier

        parent = load_classifier(args.init_from, device="cpu", threads=1).manifest
    frames = Frames(splits)
    start = "from scratch" if parent is None else f"from model {parent.version}"
    print(f"training {start} on {len(frames)} frames for {args.epochs} epochs", flush=True)
    model = train(
        frames,
        val,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        seed=TRAIN_SEED,
        threads=args.threads,
        width=args.width,
        init=None if parent is None else parent.model_path,
        small_val=small_val,
    )

    val_scores = _scores(model, val["inputs"])
    eval_scores = _scores(model, held["inputs"])
    low, high = pick_thresholds(val_scores, val["labels"], args.recall_target)
    metrics = synthetic_metrics(val, held, val_scores, eval_scores, low, high)
    metrics["synthetic_small_val"] = small_metrics(
        small_val, _scores(model, small_val["inputs"]), low, high
    )
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / MODEL_FILE
    export_onnx(model, onnx_path)
    manifest_path = args.out / MANIFEST_FILE
    manifest = {
        "name": "text-classifier",
        "version": MODEL_VERSION if parent is None else continued_version(parent.version),
        "file": MODEL_FILE,
        "sha256": sha256_of(onnx_path),
        "input": {
            "name": "frames",
            "dtype": "float32",
            "shape": ["batch", len(CHANNELS), INPUT_SIZE, INPUT_SIZE],
            "size": INPUT_SIZE,
            "channels": list(CHANNELS),
            "scale": "uint8 / 255",
            "preprocess": "scrubber.detect.model_input.model_inputs",
        },
        "output": {"name": "text_probability", "dtype": "float32", "shape": ["batch"]},
        "thresholds": {"low": low, "high": high},
        "training": {
            "command": "python -m training.train "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "generator_version": GENERATOR_VERSION,
            "small_profile_version": SMALL_PROFILE_VERSION,
            "small_frames": args.small,
            "turned_frames": args.turned,
            "seeds": {"train": TRAIN_SEED, "val": VAL_SEED, "eval": EVAL_SEED},
            "frames": {"train": len(frames), "val": args.val, "eval": args.eval},
            "train_seeds": [TRAIN_SEED] + [EXTRA_SEED + k for k in range(args.extra_splits)],
            "initialised_from": None
            if parent is None
            else {"version": parent.version, "sha256": parent.sha256},
            "held_out_font_families": sorted(HELD_OUT_FAMILIES),
            "epochs": args.epochs,
            "width": args.width,
            "batch": args.batch,
            "lr": args.lr,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "threads": args.threads,
            "recall_target": args.recall_target,
            "seconds": round(time.monotonic() - started),
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        # corpus figures belong to one model and its thresholds: `make train` rescores them
        "metrics": metrics,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    write_model_card(manifest, args.out / "MODEL_CARD.md")
    _report(metrics, low, high)
    print(f"wrote {onnx_path} and {manifest_path}", flush=True)
    return 0


def _report(metrics: dict[str, Any], low: float, high: float) -> None:
    summary = metrics["synthetic_eval"]
    print(
        f"low={low:.4f} high={high:.4f} eval AUC={summary['roc_auc']:.5f} "
        f"recall@FPR2%={summary['recall_at_fpr_2pct']:.4f} at_low={summary['at_low']}",
        flush=True,
    )


def rescore(
    out: Path, cache: Path, counts: tuple[int, int, int], recall: float, workers: int
) -> int:
    """Recompute thresholds and synthetic metrics of the model in ``out`` without training.

    Scores the cached val and eval splits with ONNX Runtime (the shipped model, hash-checked),
    and rewrites the manifest's thresholds and metrics and the card. The corpus figures are
    dropped (they depend on ``low``): rerun ``training.evaluate_corpus --write``.
    """
    from scrubber.detect import load_classifier

    classifier = load_classifier(out, device="cpu")
    val = build_split("val", VAL_SEED, counts[0], "train", workers, cache)
    held = build_split("eval", EVAL_SEED, counts[1], "held_out", workers, cache)
    small_val = build_split(
        "small-val", SMALL_VAL_SEED, counts[2], "train", workers, cache, "small"
    )

    def scores(split: dict[str, Any]) -> np.ndarray:
        return np.concatenate(
            [
                classifier.score_batch(np.asarray(split["inputs"][i : i + 256], np.float32) / 255.0)
                for i in range(0, len(split["labels"]), 256)
            ]
        )

    val_scores, eval_scores = scores(val), scores(held)
    low, high = pick_thresholds(val_scores, val["labels"], recall)
    manifest_path = out / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["thresholds"] = {"low": low, "high": high}
    manifest["training"]["recall_target"] = recall
    manifest["metrics"] = synthetic_metrics(val, held, val_scores, eval_scores, low, high)
    manifest["metrics"]["synthetic_small_val"] = small_metrics(
        small_val, scores(small_val), low, high
    )
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    write_model_card(manifest, out / "MODEL_CARD.md")
    _report(manifest["metrics"], low, high)
    return 0


def pick_thresholds(scores: np.ndarray, labels: np.ndarray, recall: float) -> tuple[float, float]:
    """Choose ``low`` and ``high`` on the validation split.

    ``low`` keeps at least ``recall`` of the text frames at or above it (a hair below the
    quantile, so ties stay above); ``high`` is the score at most 0.5% of text-free frames reach.
    """
    positives = np.sort(scores[labels == 1])
    negatives = np.sort(scores[labels == 0])
    low = float(positives[int(np.floor((1.0 - recall) * len(positives)))]) * 0.999
    top = float(negatives[min(len(negatives) - 1, int(np.ceil(0.995 * len(negatives))))])
    return low, max(low, top)


def synthetic_metrics(
    val: dict[str, Any],
    held: dict[str, Any],
    val_scores: np.ndarray,
    eval_scores: np.ndarray,
    low: float,
    high: float,
) -> dict[str, Any]:
    """Compute the manifest's synthetic figures: held-out ROC, rates at the thresholds."""
    fpr, tpr, thresholds, auc = roc(eval_scores, held["labels"])
    recall_2, threshold_2 = recall_at_fpr(eval_scores, held["labels"], 0.02)
    kinds = np.asarray(held["kinds"])
    per_kind = {
        kind: rates_at(eval_scores[kinds == kind], held["labels"][kinds == kind], low)
        for kind in sorted(set(held["kinds"]))
    }
    step = max(1, len(fpr) // 200)
    return {
        "synthetic_eval": {
            "frames": len(eval_scores),
            "seed": EVAL_SEED,
            "fonts": "held_out",
            "roc_auc": auc,
            "recall_at_fpr_2pct": recall_2,
            "threshold_at_fpr_2pct": threshold_2,
            "at_low": rates_at(eval_scores, held["labels"], low),
            "at_high": rates_at(eval_scores, held["labels"], high),
            "per_background_at_low": per_kind,
            "roc_curve": {
                "fpr": fpr[::step].tolist(),
                "tpr": tpr[::step].tolist(),
                "threshold": [min(t, 1.0) for t in thresholds[::step].tolist()],
            },
        },
        "synthetic_val": {
            "frames": len(val_scores),
            "seed": VAL_SEED,
            "fonts": "train",
            "at_low": rates_at(val_scores, val["labels"], low),
        },
    }


def small_metrics(
    split: dict[str, Any], scores: np.ndarray, low: float, high: float
) -> dict[str, Any]:
    """Figures of the ``small`` profile's validation split at the model's thresholds.

    A text-free small frame above ``high`` is what holds a clean instance in quarantine
    (``uncertain_score``); above ``low`` it only costs an OCR pass.
    """
    _, _, _, auc = roc(scores, split["labels"])
    recall_2, _ = recall_at_fpr(scores, split["labels"], 0.02)
    return {
        "frames": len(scores),
        "seed": SMALL_VAL_SEED,
        "fonts": "train",
        "profile_version": SMALL_PROFILE_VERSION,
        "roc_auc": auc,
        "recall_at_fpr_2pct": recall_2,
        "at_low": rates_at(scores, split["labels"], low),
        "at_high": rates_at(scores, split["labels"], high),
    }


if __name__ == "__main__":
    raise SystemExit(main())
