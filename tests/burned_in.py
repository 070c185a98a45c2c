"""Synthetic instances with text burned into their pixels, drawn the way scanners draw it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scrubber.samples import build_image


def ultrasound_with_banner(name: str, patient_id: str) -> Dataset:
    """An 8-bit RGB ultrasound frame with the patient's name and ID in its banner.

    The header carries the same name and ID, so both routes to finding them (OCR of the banner,
    header values matched in OCR text) are exercised.
    """
    rows, columns = 480, 640
    view = np.zeros((rows, columns, 3), np.uint8)
    cv2.ellipse(view, (320, 40), (420, 420), 90, -35, 35, (70, 70, 70), -1)
    cv2.putText(view, name, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    cv2.putText(view, patient_id, (480, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1)
    ds, _ = build_image(photometric="RGB", bits_stored=8, rows=rows, columns=columns)
    ds.PixelData = view.tobytes()
    ds.Modality = "US"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientName = name.replace(" ", "^")
    ds.PatientID = patient_id
    return ds


#: Boxes over the banner of :func:`ultrasound_with_banner`: ``(frame, x, y, width, height)``.
NAME_BOX = (-1, 4, 6, 170, 26)  # "MILLER ROSE" drawn at (10, 24)
ID_BOX = (-1, 474, 6, 110, 26)  # "8812345" drawn at (480, 24)


def hold_banner(
    quarantine: Path,
    relative: Path,
    boxes: list[tuple[int, int, int, int, int]],
    name: str = "MILLER ROSE",
    patient_id: str = "8812345",
) -> Path:
    """Put a banner instance into a quarantine the way a run holds one (``uncertain_score``).

    The original is written beside the quarantine; returns its path.
    """
    from scrubber.pipeline import InstanceResult, Outcome, QuarantineReason
    from scrubber.runner.quarantine import commit_staged, stage_quarantine

    source = quarantine.parent / "held-originals" / relative
    source.parent.mkdir(parents=True, exist_ok=True)
    ultrasound_with_banner(name, patient_id).save_as(source, enforce_file_format=True)
    result = InstanceResult(
        outcome=Outcome.QUARANTINED,
        reason=QuarantineReason.UNCERTAIN_SCORE,
        message="The classifier is sure of text that OCR did not find.",
        frames=1,
        scores=[0.97],
        boxes=boxes,
    )
    commit_staged(stage_quarantine(source, quarantine, relative, result))
    return source
