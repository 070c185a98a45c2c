"""One instance, end to end: the pure function the command line, the runner and the server share.

* :mod:`~scrubber.pipeline.outcome`: :class:`Outcome`, :class:`QuarantineReason` and the
  PHI-free :class:`InstanceResult`.
* :mod:`~scrubber.pipeline.instance`: :func:`scrub_instance` and its :class:`ScrubConfig`.
* :mod:`~scrubber.pipeline.release`: :func:`release_instance`, a reviewer's boxes applied to a
  held instance.
"""

from __future__ import annotations

from scrubber.pipeline.instance import ScrubConfig, scrub_instance
from scrubber.pipeline.outcome import InstanceResult, Outcome, QuarantineReason
from scrubber.pipeline.release import ResidualTextError, release_instance

__all__ = [
    "InstanceResult",
    "Outcome",
    "QuarantineReason",
    "ResidualTextError",
    "ScrubConfig",
    "release_instance",
    "scrub_instance",
]
