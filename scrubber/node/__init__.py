"""The DICOM node: receive from a PACS, scrub, forward (``scrubber node``; pynetdicom)."""

from __future__ import annotations

from scrubber.node.service import Destination, NodeSettings, ScrubNode

__all__ = ["Destination", "NodeSettings", "ScrubNode"]
