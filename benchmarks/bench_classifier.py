"""Frames per second of the classifier path: render, model input and inference, stage by stage.

For three kinds of frame, decoded once beforehand (decoding is bench_pixels.py's business):

* ``CT 256x256``: 12-bit CT-like MONOCHROME2 (rescale and a VOI window), already the model's input
  size, so the model input step only stacks the channels;
* ``US 800x600 RGB``: 8-bit colour at ultrasound size;
* ``CR 2048x2048``: 12-bit greyscale at radiograph size, windowed by its own range.

Each is timed in batches (32 by default) over ``--frames`` frames: :func:`scrubber.render.
render_frame`, :func:`scrubber.detect.model_inputs`, :meth:`TextClassifier.score_batch`, and the
total, median of ``--rounds`` rounds after one warm-up batch. ONNX Runtime's intra-op threads and
OpenCV's threads are both set to ``--threads``. Frames are cycled from a small pool of distinct
ones (to keep memory small); ``score_batch`` does not deduplicate, so every frame is inferred.

Without a model folder holding ``text_classifier.json`` (``--model-dir``, else the shipped one in
``models/`` when it is there), or with ``--toy``, it builds a stand-in with the same contract in a
temporary folder: a depthwise-separable convolutional net of about 28 M multiply-adds with random
weights, the size the shipped model aims at. Its timings are representative; its scores mean
nothing.

Usage::

    python benchmarks/bench_classifier.py [--model-dir DIR | --toy] [--threads 2] [--frames 256]
        [--device auto|cpu|cuda] [--batch-size 32] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from scrubber.detect import (
    CHANNELS,
    INPUT_SIZE,
    MANIFEST_NAME,
    TextClassifier,
    default_model_dir,
    load_classifier,
    model_inputs,
)
from scrubber.dicom_io.pixels import PixelDescription, describe_pixels, iter_frames
from scrubber.errors import ConfigError
from scrubber.render import render_frame
from scrubber.samples import build_image

# (output channels, stride) of the toy's depthwise-separable blocks after a 16-channel stem.
TOY_BLOCKS = ((32, 2), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2))


def build_toy_model(folder: Path, seed: int = 0) -> int:
    """Write a toy classifier (ONNX and manifest) into ``folder``; return its multiply-adds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    macs = 0

    def weight(name: str, shape: tuple[int, ...], fan_in: int) -> str:
        values = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        initializers.append(numpy_helper.from_array(values, name))
        return name

    def conv(x: str, cin: int, cout: int, kernel: int, stride: int, groups: int, side: int) -> str:
        nonlocal macs
        index = len(nodes)
        w = weight(f"w{index}", (cout, cin // groups, kernel, kernel), cin // groups * kernel**2)
        b = weight(f"b{index}", (cout,), cout)
        pad = kernel // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [f"c{index}"],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad] * 4,
                group=groups,
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        out_side = side // stride
        macs += out_side * out_side * cout * (cin // groups) * kernel * kernel
        return f"r{index}"

    side = INPUT_SIZE
    x = conv("frames", len(CHANNELS), 16, 3, 2, 1, side)
    side //= 2
    channels = 16
    for cout, stride in TOY_BLOCKS:
        x = conv(x, channels, channels, 3, stride, channels, side)  # depthwise
        side //= stride
        x = conv(x, channels, cout, 1, 1, 1, side)  # pointwise
        channels = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    head_w = weight("head_w", (channels, 1), channels)
    head_b = weight("head_b", (1,), 1)
    nodes.append(helper.make_node("Gemm", ["flat", head_w, head_b], ["logit"]))
    macs += channels
    initializers.append(numpy_helper.from_array(np.array([-1], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Reshape", ["logit", "flat_shape"], ["logit_flat"]))
    nodes.append(helper.make_node("Sigmoid", ["logit_flat"], ["text_probability"]))
    graph = helper.make_graph(
        nodes,
        "toy-text-classifier",
        [
            helper.make_tensor_value_info(
                "frames", TensorProto.FLOAT, ["batch", len(CHANNELS), INPUT_SIZE, INPUT_SIZE]
            )
        ],
        [helper.make_tensor_value_info("text_probability", TensorProto.FLOAT, ["batch"])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    (folder / "text_classifier.onnx").write_bytes(data)
    manifest = {
        "name": "text-classifier-toy",
        "version": "0.0.0",
        "file": "text_classifier.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "input": {"name": "frames", "channels": list(CHANNELS), "size": INPUT_SIZE,
                  "dtype": "float32"},
        "output": {"name": "text_probability"},
        "thresholds": {"low": 0.1, "high": 0.9},
        "training": {"note": "random weights; benchmark stand-in only"},
        "metrics": {"multiply_adds": macs},
    }  # fmt: skip
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return macs


@contextmanager
def model_folder(args: argparse.Namespace) -> Iterator[tuple[Path, str]]:
    """The model folder to benchmark and a description of it."""
    if args.model_dir is not None:
        yield args.model_dir, "given"
        return
    if not args.toy:
        try:
            shipped = default_model_dir()
        except ConfigError:
            shipped = None
        if shipped is not None and (shipped / MANIFEST_NAME).is_file():
            yield shipped, "shipped"
            return
    with tempfile.TemporaryDirectory(prefix="scrubber-toy-model-") as scratch:
        macs = build_toy_model(Path(scratch))
        yield Path(scratch), f"toy stand-in, {macs / 1e6:.1f} M multiply-adds, random weights"


def make_case(kind: str, pool: int) -> tuple[Dataset, PixelDescription, list[np.ndarray]]:
    """A data set of ``pool`` distinct frames of one kind, and those frames decoded."""
    if kind == "CT 256x256":
        ds, _ = build_image(bits_stored=12, rows=256, columns=256, frames=pool, seed=1)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
    elif kind == "US 800x600 RGB":
        ds, _ = build_image(
            photometric="RGB", bits_stored=8, rows=600, columns=800, frames=pool, seed=2
        )
    else:
        ds, _ = build_image(bits_stored=12, rows=2048, columns=2048, frames=pool, seed=3)
    description = describe_pixels(ds)
    return ds, description, list(iter_frames(ds))


def time_case(
    classifier: TextClassifier,
    ds: Dataset,
    description: PixelDescription,
    frames: list[np.ndarray],
    count: int,
    rounds: int,
) -> dict[str, float]:
    """Median seconds of each stage over ``count`` frames."""
    size = classifier.batch_size

    def one_round(total: int) -> dict[str, float]:
        spent = {"render": 0.0, "model_input": 0.0, "inference": 0.0}
        for start in range(0, total, size):
            indices = range(start, min(total, start + size))
            t0 = time.perf_counter()
            views = [render_frame(frames[i % len(frames)], ds, description) for i in indices]
            t1 = time.perf_counter()
            batch = model_inputs(views)
            t2 = time.perf_counter()
            classifier.score_batch(batch)
            t3 = time.perf_counter()
            spent["render"] += t1 - t0
            spent["model_input"] += t2 - t1
            spent["inference"] += t3 - t2
        spent["total"] = sum(spent.values())
        return spent

    one_round(min(count, size))  # warm-up: first-run allocations, thread pools
    measured = [one_round(count) for _ in range(rounds)]
    return {stage: statistics.median(r[stage] for r in measured) for stage in measured[0]}


def cpu_name() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    """Run the benchmark and print one line per kind of frame."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--toy", action="store_true", help="benchmark the toy stand-in model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import cv2
    import onnxruntime as ort  # type: ignore[import-untyped]

    cv2.setNumThreads(args.threads)
    rows: list[dict[str, Any]] = []
    with model_folder(args) as (folder, origin):
        classifier = load_classifier(
            folder, device=args.device, threads=args.threads, batch_size=args.batch_size
        )
        for kind, pool in (("CT 256x256", 16), ("US 800x600 RGB", 16), ("CR 2048x2048", 4)):
            ds, description, frames = make_case(kind, pool)
            seconds = time_case(classifier, ds, description, frames, args.frames, args.rounds)
            rows.append(
                {
                    "case": kind,
                    "frames": args.frames,
                    **{f"{stage}_fps": round(args.frames / s, 1) for stage, s in seconds.items()},
                    **{
                        f"{stage}_ms_per_frame": round(1000 * s / args.frames, 3)
                        for stage, s in seconds.items()
                    },
                }
            )
    info = {
        "model": f"{classifier.manifest.name} {classifier.manifest.version} ({origin})",
        "providers": list(classifier.providers),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "onnxruntime_threads": classifier.threads,
        "opencv_threads": cv2.getNumThreads(),
        "batch_size": classifier.batch_size,
        "versions": (
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}, "
            f"OpenCV {cv2.__version__}, numpy {np.__version__}"
        ),
    }
    if args.json:
        print(json.dumps({**info, "rows": rows}))
        return
    for key, value in info.items():
        print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    stages = ("render", "model_input", "inference", "total")
    print(f"{'frames per second':18} " + " ".join(f"{s:>12}" for s in stages) + "   ms/frame")
    for row in rows:
        print(
            f"{row['case']:18} "
            + " ".join(f"{row[f'{s}_fps']:12}" for s in stages)
            + f"   {row['total_ms_per_frame']:.2f}"
        )


if __name__ == "__main__":
    main()
