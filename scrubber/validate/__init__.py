"""Validation toolkit: synthetic validation sets with answer keys, and scoring against them.

:func:`~scrubber.validate.synth.synthesize` builds a set of fake-patient instances on real images
with an answer key in the MIDI format; :func:`~scrubber.validate.evaluate.evaluate` scores a
de-identified copy of it, the way the NCI/TCIA MIDI validation script does.
"""

from scrubber.validate.answer_key import ACTIONS, Answer, AnswerKey, AnswerKeyError, InstanceAnswers
from scrubber.validate.evaluate import (
    Evaluation,
    EvaluationError,
    evaluate,
    read_mapping,
    write_report,
)
from scrubber.validate.synth import SynthError, SynthResult, SynthSettings, synthesize

__all__ = [
    "ACTIONS",
    "Answer",
    "AnswerKey",
    "AnswerKeyError",
    "Evaluation",
    "EvaluationError",
    "InstanceAnswers",
    "SynthError",
    "SynthResult",
    "SynthSettings",
    "evaluate",
    "read_mapping",
    "synthesize",
    "write_report",
]
