"""One instance, end to end: the pure function the command line, the runner and the server share.

* :mod:`~scrubber.pipeline.outcome`: :class:`Outcome`, :class:`QuarantineReason` and the
  PHI-free :class:`InstanceResult`.
* :mod:`~scrubber.pipeline.instance`: :func:`scrub_instance` and its :class:`ScrubConfig`.
"""

from __future__ import annotations

from scrubber.pipeline.instance import ScrubConfig, scrub_instance
from scrubber.pipeline.outcome import InstanceResult, Outcome, QuarantineReason

__all__ = ["InstanceResult", "Outcome", "QuarantineReason", "ScrubConfig", "scrub_instance"]
