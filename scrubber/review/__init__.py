"""The quarantine review queue (used by ``scrubber review`` and the server)."""

from __future__ import annotations

from scrubber.review.queue import AUDIT_FILE, QueueItem, ReviewError, ReviewQueue

__all__ = ["AUDIT_FILE", "QueueItem", "ReviewError", "ReviewQueue"]
