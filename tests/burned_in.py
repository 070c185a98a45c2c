"""Synthetic instances with text burned into their pixels, drawn the way scanners draw it."""

from __future__ import annotations

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
