"""Score every frame of the real-world corpus with the shipped classifier.

    python -m training.evaluate_corpus [--corpus ../shared/corpus] [--model-dir models] [--write]

Prints, per ``phi`` file, the lowest frame score (every frame must score above ``low``) and lists
the text-free (``none``) images that score above ``low`` (at most 5% may). With ``--write`` the
figures go into the manifest's ``metrics.corpus`` (the ONNX file and its sha256 are unchanged).
Only file paths, labels and scores are printed or stored: no header values, no pixel text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scrubber.detect import TextClassifier, load_classifier, score_instance
from scrubber.dicom_io import read_instance
from scrubber.errors import InputError
from training.model_card import write_model_card

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"


def score_corpus(classifier: TextClassifier, corpus: Path) -> dict[str, dict[str, Any]]:
    """Score every frame of every decodable corpus file.

    Parameters
    ----------
    classifier : TextClassifier
        The loaded classifier.
    corpus : pathlib.Path
        The corpus folder (with ``labels.json`` and ``files/``).

    Returns
    -------
    dict
        Per relative path: ``label`` (the ``burned_in`` label) and ``scores`` (one per frame), or
        ``refused`` (the error reason) for files that cannot be decoded.
    """
    labels = json.loads((corpus / "labels.json").read_text(encoding="utf-8"))
    results: dict[str, dict[str, Any]] = {}
    for rel, label in sorted(labels.items()):
        entry: dict[str, Any] = {"label": label["burned_in"]}
        try:
            ds = read_instance(corpus / "files" / rel)
            entry["scores"] = [float(s) for s in score_instance(classifier, ds)]
        except InputError as exc:
            entry["refused"] = exc.reason
        results[rel] = entry
    return results


def summarise(results: dict[str, dict[str, Any]], low: float) -> dict[str, Any]:
    """Condense :func:`score_corpus` results into the figures the issue asks for."""
    phi = {
        rel: min(e["scores"])
        for rel, e in results.items()
        if e["label"] == "phi" and e.get("scores")
    }
    none = {
        rel: max(e["scores"])
        for rel, e in results.items()
        if e["label"] == "none" and e.get("scores")
    }
    other = {
        rel: max(e["scores"])
        for rel, e in results.items()
        if e["label"] == "non_phi_text" and e.get("scores")
    }
    none_above = sorted(rel for rel, score in none.items() if score >= low)
    return {
        "low": low,
        "phi_files": len(phi),
        "phi_frames": sum(len(results[rel]["scores"]) for rel in phi),
        "phi_files_with_a_frame_below_low": sorted(rel for rel, s in phi.items() if s < low),
        "phi_min_frame_score": {rel: round(score, 4) for rel, score in sorted(phi.items())},
        "none_images": len(none),
        "none_images_above_low": none_above,
        "none_fraction_above_low": len(none_above) / max(1, len(none)),
        "non_phi_text_images_above_low": sum(1 for s in other.values() if s >= low),
        "non_phi_text_images": len(other),
    }


def main(argv: list[str] | None = None) -> int:
    """Score the corpus and print (or store) the summary."""
    parser = argparse.ArgumentParser(description="Score the real-world corpus with the classifier")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--write", action="store_true", help="store the figures in the manifest")
    args = parser.parse_args(argv)
    if not (args.corpus / "labels.json").exists():
        parser.error(f"no corpus at {args.corpus} (expected labels.json and files/ there)")
    classifier = load_classifier(args.model_dir)
    low = classifier.thresholds.low
    summary = summarise(score_corpus(classifier, args.corpus), low)
    for rel, score in summary["phi_min_frame_score"].items():
        print(f"phi   {score:.4f}  {rel}")
    for rel in summary["none_images_above_low"]:
        print(f"none above low: {rel}")
    print(
        f"phi files below low: {len(summary['phi_files_with_a_frame_below_low'])} of "
        f"{summary['phi_files']}; none images above low: {len(summary['none_images_above_low'])} "
        f"of {summary['none_images']} ({100 * summary['none_fraction_above_low']:.1f}%)"
    )
    if args.write:
        manifest_path = args.model_dir / "text_classifier.json"
        manifest = json.loads(manifest_path.read_text())
        manifest.setdefault("metrics", {})["corpus"] = summary
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        write_model_card(manifest, args.model_dir / "MODEL_CARD.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
