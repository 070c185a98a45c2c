"""`training/` reproduces a model end to end: data, training, ONNX export, manifest, card.

A tiny run (a few hundred frames, one epoch) so that it fits in the suite; the real run is
`make train`. Needs torch (`make train-setup`); skipped locally without it, fails under CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scrubber.detect import load_classifier
from scrubber.detect.model_input import model_inputs
from tests.conftest import require_torch
from training.synth import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_torch()
    from training.train import main

    out = tmp_path_factory.mktemp("models")
    cache = tmp_path_factory.mktemp("cache")
    args = [
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--train",
        "96",
        "--val",
        "48",
        "--eval",
        "48",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--workers",
        "1",
        "--threads",
        "1",
        "--small-val",
        "32",
    ]
    assert main(args) == 0
    (out / "cache").symlink_to(cache)
    return out


def test_training_writes_a_model_its_manifest_and_card(trained: Path) -> None:
    manifest = json.loads((trained / "text_classifier.json").read_text())
    assert (trained / manifest["file"]).is_file()
    assert (
        manifest["input"]["name"] == "frames" and manifest["output"]["name"] == "text_probability"
    )
    assert 0.0 <= manifest["thresholds"]["low"] <= manifest["thresholds"]["high"] <= 1.0
    evaluation = manifest["metrics"]["synthetic_eval"]
    assert evaluation["frames"] == 48 and evaluation["fonts"] == "held_out"
    assert 0.0 <= evaluation["roc_auc"] <= 1.0
    assert manifest["training"]["frames"] == {"train": 96, "val": 48, "eval": 48}
    # the small-frame validation split is reported for every model, trained on or not
    small = manifest["metrics"]["synthetic_small_val"]
    assert small["frames"] == 32 and 0.0 <= small["roc_auc"] <= 1.0
    assert small["at_high"]["threshold"] == manifest["thresholds"]["high"]
    assert small["at_low"]["positives"] + small["at_low"]["negatives"] == 32
    assert manifest["training"]["small_frames"] == 0
    card = (trained / "MODEL_CARD.md").read_text()
    assert manifest["sha256"] in card and "held-out" in card
    assert "## Small frames" in card and "small-profile frames" not in card


def test_exported_model_loads_with_its_hash_and_scores_frames(trained: Path) -> None:
    classifier = load_classifier(trained, device="cpu", threads=1)
    views = [s.view for s in generate(99, 5)]
    scores = classifier.score_views(views)
    assert scores.shape == (5,) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))


def test_onnx_export_is_faithful_to_torch(tmp_path: Path) -> None:
    require_torch()
    import onnxruntime  # type: ignore[import-untyped]
    import torch

    from training.model import TextClassifierNet
    from training.train import export_onnx

    torch.manual_seed(0)
    net = TextClassifierNet()
    net.train()
    with torch.no_grad():  # give the batch norms non-trivial running statistics
        for _ in range(3):
            net(torch.rand(8, 4, 256, 256))
    net.eval()
    export_onnx(net, tmp_path / "m.onnx")
    batch = model_inputs([s.view for s in generate(7, 6)])
    with torch.no_grad():
        expected = net(torch.from_numpy(batch)).numpy()
    session = onnxruntime.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(["text_probability"], {"frames": batch})
    assert got.shape == (6,)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_rescore_recomputes_thresholds_of_the_shipped_model(trained: Path, tmp_path: Path) -> None:
    import shutil

    from training.train import main

    for name in ("text_classifier.json", "text_classifier.onnx"):
        shutil.copy(trained / name, tmp_path / name)
    before = json.loads((tmp_path / "text_classifier.json").read_text())
    args = [
        "--out",
        str(tmp_path),
        "--cache",
        str(trained / "cache"),
        "--val",
        "48",
        "--eval",
        "48",
        "--workers",
        "1",
        "--small-val",
        "32",
        "--rescore",
        "--recall-target",
        "0.5",
    ]
    assert main(args) == 0
    after = json.loads((tmp_path / "text_classifier.json").read_text())
    assert after["sha256"] == before["sha256"]  # the model itself is untouched
    assert after["training"]["recall_target"] == 0.5
    assert after["thresholds"]["low"] >= before["thresholds"]["low"]
    assert after["metrics"]["synthetic_val"]["at_low"]["recall"] >= 0.5
    assert (
        after["metrics"]["synthetic_small_val"]["at_low"]["threshold"]
        == (after["thresholds"]["low"])
    )
    assert (tmp_path / "MODEL_CARD.md").is_file()


def test_a_tampered_model_is_refused(trained: Path, tmp_path: Path) -> None:
    from scrubber.errors import ModelIntegrityError

    for name in ("text_classifier.json", "text_classifier.onnx"):
        (tmp_path / name).write_bytes((trained / name).read_bytes())
    data = bytearray((tmp_path / "text_classifier.onnx").read_bytes())
    data[-1] ^= 0x01
    (tmp_path / "text_classifier.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_classifier(tmp_path, device="cpu")


def test_cached_splits_are_reused(trained: Path, tmp_path: Path) -> None:
    from training.train import build_split

    first = build_split("probe", 5, 8, "train", 1, tmp_path)
    again = build_split("probe", 5, 8, "train", 1, tmp_path)
    assert np.array_equal(np.asarray(first["inputs"]), np.asarray(again["inputs"]))
    assert first["labels"].tolist() == again["labels"].tolist()
    batch = model_inputs([s.view for s in generate(5, 8)])
    assert np.array_equal((batch * 255).round().astype(np.uint8), np.asarray(first["inputs"]))
    # text boxes are kept, in model-input cells: inside the input, one list per frame
    assert len(again["boxes"]) == 8
    for label, lines in zip(again["labels"], again["boxes"], strict=True):
        assert bool(lines) == bool(label)
        for x, y, w, h in lines:
            assert min(x, y) >= 0 and w > 0 and h > 0 and x + w <= 256.5 and y + h <= 256.5


def test_small_profile_splits_are_cached_apart_from_standard_ones(
    trained: Path, tmp_path: Path
) -> None:
    from training.train import build_split

    standard = build_split("probe", 5, 4, "train", 1, tmp_path)
    small = build_split("probe", 5, 4, "train", 1, tmp_path, profile="small")
    assert len(list(tmp_path.glob("probe-*.inputs.npy"))) == 2
    assert not np.array_equal(np.asarray(standard["inputs"]), np.asarray(small["inputs"]))
    views = [s.view for s in generate(5, 4, profile="small")]
    batch = model_inputs(views)
    assert np.array_equal((batch * 255).round().astype(np.uint8), np.asarray(small["inputs"]))


def test_a_cache_without_boxes_is_generated_again(trained: Path, tmp_path: Path) -> None:
    from training.train import build_split

    build_split("probe", 5, 4, "train", 1, tmp_path)
    (meta,) = tmp_path.glob("probe-*.meta.json")
    old = json.loads(meta.read_text())
    meta.write_text(json.dumps({"labels": old["labels"], "kinds": old["kinds"]}))
    again = build_split("probe", 5, 4, "train", 1, tmp_path)
    assert again["boxes"] == old["boxes"]


def test_diagnose_reports_fit_and_recall_by_text_size(trained: Path, tmp_path: Path) -> None:
    from training.diagnose import main

    report = tmp_path / "diag.json"
    args = ["--model-dir", str(trained), "--cache", str(trained / "cache"), "--json", str(report)]
    args += ["--train", "96", "--train-size", "96", "--val", "48", "--eval", "48"]
    assert main(args) == 0
    figures = json.loads(report.read_text())
    assert set(figures) == {"model", "train", "val", "eval"}
    assert figures["train"]["frames"] == 96 and "by_text_height_cells" not in figures["train"]
    for name in ("val", "eval"):
        split = figures[name]
        assert 0.0 <= split["roc_auc"] <= 1.0 and 0.0 <= split["recall_at_fpr_2pct"] <= 1.0
        heights = split["by_text_height_cells"]
        assert sum(g["frames"] for g in heights.values()) == sum(
            g["frames"] for g in split["by_background"].values()
        )
        assert list(heights) == sorted(heights, key=lambda k: float(k.lstrip(">=").split("-")[0]))


def test_warm_start_reproduces_the_exported_model_exactly(tmp_path: Path) -> None:
    require_torch()
    import onnxruntime
    import torch

    from training.model import TextClassifierNet
    from training.train import export_onnx, load_onnx_weights

    torch.manual_seed(1)
    net = TextClassifierNet()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding changes the weights
        net.train()
        for _ in range(3):
            net(torch.rand(8, 4, 256, 256))
    net.eval()
    export_onnx(net, tmp_path / "m.onnx")
    fresh = TextClassifierNet()
    load_onnx_weights(fresh, tmp_path / "m.onnx")
    fresh.eval()
    batch = model_inputs([s.view for s in generate(11, 6)])
    session = onnxruntime.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(["text_probability"], {"frames": batch})
    with torch.no_grad():
        got = fresh(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # another width cannot take these weights
    with pytest.raises(ValueError, match="width"):
        load_onnx_weights(TextClassifierNet(width=24), tmp_path / "m.onnx")


def test_fine_tuning_from_a_model_records_its_parent(trained: Path, tmp_path: Path) -> None:
    from training.train import main

    parent = json.loads((trained / "text_classifier.json").read_text())
    args = ["--out", str(tmp_path), "--cache", str(trained / "cache"), "--train", "96"]
    args += ["--val", "48", "--eval", "48", "--epochs", "1", "--batch", "32", "--workers", "1"]
    args += ["--threads", "1", "--extra-splits", "1", "--init-from", str(trained)]
    args += ["--small", "64", "--small-val", "32"]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "text_classifier.json").read_text())
    training = manifest["training"]
    assert training["initialised_from"] == {
        "version": parent["version"],
        "sha256": parent["sha256"],
    }
    assert training["frames"]["train"] == 192 + 64 and len(training["train_seeds"]) == 2
    assert training["small_frames"] == 64
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "and 64 small-profile frames" in card
    assert manifest["sha256"] != parent["sha256"]
    assert manifest["version"] != parent["version"]


def test_frames_reads_several_splits_as_one() -> None:
    from training.train import Frames

    a = {"inputs": np.arange(3 * 2).reshape(3, 2).astype(np.uint8), "labels": np.array([0, 1, 0])}
    b = {"inputs": np.arange(10, 14).reshape(2, 2).astype(np.uint8), "labels": np.array([1, 1])}
    frames = Frames([a, b])
    assert len(frames) == 5 and frames.labels.tolist() == [0, 1, 0, 1, 1]
    np.testing.assert_array_equal(frames.take(np.array([1, 3, 4])), [[2, 3], [10, 11], [12, 13]])
    np.testing.assert_array_equal(frames.take(np.array([0])), [[0, 1]])


def test_a_continued_model_raises_its_parents_minor_version() -> None:
    from training.train import continued_version

    assert continued_version("2.0.0") == "2.1.0"
    assert continued_version("2.1.3") == "2.2.0"
