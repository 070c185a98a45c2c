"""The shipped classifier on the real-world corpus: no text frame called clean, few false alarms.

Issue 4's bar: every frame of every `phi` file scores above `low`, and at most 5% of the
text-free (`none`) images do. The figures are also in models/MODEL_CARD.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from scrubber.detect import load_classifier
from tests.conftest import CORPUS, ROOT, require_shared
from training.evaluate_corpus import score_corpus, summarise


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    require_shared(CORPUS / "labels.json", "The real-world corpus")
    classifier = load_classifier(ROOT / "models", device="cpu")
    results = score_corpus(classifier, CORPUS)
    return summarise(results, classifier.thresholds.low)


def test_every_frame_of_every_phi_file_scores_above_low(summary: dict[str, Any]) -> None:
    assert summary["phi_files"] >= 30
    assert summary["phi_files_with_a_frame_below_low"] == []


def test_the_manifest_reports_these_corpus_figures(summary: dict[str, Any]) -> None:
    manifest = json.loads((ROOT / "models" / "text_classifier.json").read_text())
    stored = manifest["metrics"]["corpus"]
    assert stored["none_images_above_low"] == summary["none_images_above_low"]
    assert stored["phi_files_with_a_frame_below_low"] == summary["phi_files_with_a_frame_below_low"]


@pytest.mark.xfail(
    strict=True,
    reason="issue 4 open: model 2.2.0 flags 26% of the real text-free images at low (noisy "
    "low-resolution MR, photographs, test patterns); see models/MODEL_CARD.md",
)
def test_at_most_five_percent_of_text_free_images_score_above_low(
    summary: dict[str, Any],
) -> None:
    assert summary["none_images"] >= 150
    assert summary["none_fraction_above_low"] <= 0.05, summary["none_images_above_low"]
