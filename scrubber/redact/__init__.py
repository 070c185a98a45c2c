"""Redaction: painting boxes black in stored values, writing the frames back, and checking it."""

from __future__ import annotations

from scrubber.redact.boxes import Box, black_value, paint
from scrubber.redact.instance import (
    RedactionResult,
    redact_instance,
    remove_overlays,
    verify_redaction,
)

__all__ = [
    "Box",
    "RedactionResult",
    "black_value",
    "paint",
    "redact_instance",
    "remove_overlays",
    "verify_redaction",
]
