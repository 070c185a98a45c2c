"""The PS3.15 Annex E confidentiality profile: actions, options and their resolution per attribute.

:data:`~scrubber.deid.profile_table.PROFILE_TABLE` holds the standard's table as data. This module
turns it, together with the options a project selects, into one final :class:`Action` per tag, so
that the engine does a single dictionary lookup per element.

Resolution rules
----------------
1. If any selected option names the attribute, its action replaces the Basic Profile action. When
   several selected options name it (a calibration date under *Retain Device Identity* and *Retain
   Longitudinal Temporal Information with Modified Dates*), the most protective of their actions
   wins: ``C`` (clean) over ``K`` (keep).
2. Combined actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) mean "the first unless a
   later one is needed to keep the IOD conformant". Conformance depends on the IOD, which the table
   does not carry, so :data:`CONFORMANCE_ACTIONS` names the attributes that are Type 1 or Type 2 in
   the common composite IODs (and the reference sequences whose UIDs are worth keeping consistent);
   every other attribute takes the first, most removing, action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from scrubber.deid.profile_table import PROFILE_TABLE
from scrubber.errors import ConfigError

__all__ = [
    "CONFORMANCE_ACTIONS",
    "DEFAULT_OPTIONS",
    "Action",
    "Profile",
    "ProfileOption",
    "ProfileRule",
    "parse_rules",
]


class Action(StrEnum):
    """A single PS3.15 Table E.1-1 action code."""

    REMOVE = "X"
    """Remove the attribute."""
    EMPTY = "Z"
    """Replace with a zero-length value."""
    DUMMY = "D"
    """Replace with a non-zero-length dummy value consistent with the VR."""
    KEEP = "K"
    """Keep the value (sequences are still walked)."""
    CLEAN = "C"
    """Replace with values of similar meaning that identify nobody."""
    UID = "U"
    """Replace with a consistent keyed UID (sequences: walk and remap the UIDs inside)."""


class ProfileOption(StrEnum):
    """The options of the Basic Application Level Confidentiality Profile (PS3.15 E.3)."""

    RETAIN_LONG_FULL_DATES = "retain-long-full-dates"
    RETAIN_LONG_MODIFIED_DATES = "retain-long-modified-dates"
    RETAIN_PATIENT_CHARS = "retain-patient-chars"
    RETAIN_DEVICE_ID = "retain-device-id"
    RETAIN_INSTITUTION_ID = "retain-institution-id"
    RETAIN_UIDS = "retain-uids"
    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"

    @property
    def code(self) -> str:
        """The DCM code value of this option (CID 7050)."""
        return _OPTION_CODES[self][0]

    @property
    def meaning(self) -> str:
        """The DCM code meaning of this option (CID 7050)."""
        return _OPTION_CODES[self][1]


_OPTION_CODES: dict[ProfileOption, tuple[str, str]] = {
    ProfileOption.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    ProfileOption.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    ProfileOption.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    ProfileOption.RETAIN_LONG_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    ProfileOption.RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    ProfileOption.RETAIN_PATIENT_CHARS: ("113108", "Retain Patient Characteristics Option"),
    ProfileOption.RETAIN_DEVICE_ID: ("113109", "Retain Device Identity Option"),
    ProfileOption.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    ProfileOption.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    ProfileOption.RETAIN_INSTITUTION_ID: ("113112", "Retain Institution Identity Option"),
}

BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")

DEFAULT_OPTIONS: frozenset[ProfileOption] = frozenset(
    {ProfileOption.RETAIN_LONG_MODIFIED_DATES, ProfileOption.CLEAN_GRAPHICS}
)
"""Options a research import gets unless it says otherwise: dates shifted by a per-project constant
(intervals survive, real dates do not) and graphics cleaned (overlays and curves removed)."""

# Combined actions resolved for attributes that are Type 1 (needs a value: D) or Type 2 (needs to be
# present: Z) in common composite IODs, or reference sequences kept with their UIDs remapped (U).
CONFORMANCE_ACTIONS: Mapping[str, Action] = {
    # General Image (Type 2C) / Enhanced Multi-frame and SR Document General (Type 1).
    "ContentDate": Action.DUMMY,
    "ContentTime": Action.DUMMY,
    # Enhanced MR/CT/XA image modules: Type 1C.
    "AcquisitionDateTime": Action.DUMMY,
    # Enhanced General Equipment: Type 1.
    "DeviceSerialNumber": Action.DUMMY,
    # Presentation State Identification: Type 2.
    "ContentCreatorName": Action.EMPTY,
    # Acquisition Context module: Type 2.
    "AcquisitionContextSequence": Action.EMPTY,
    # Contrast/Bolus module: Type 2.
    "ContrastBolusAgent": Action.EMPTY,
    # RT Beams / RT Approval / RT General Plan.
    "TreatmentMachineName": Action.EMPTY,
    "ReviewerName": Action.EMPTY,
    "RTPlanDate": Action.DUMMY,
    "RTPlanTime": Action.DUMMY,
    # Enhanced DICOM "Instruction" macros: Type 1C.
    "InstructionPerformedDateTime": Action.DUMMY,
    # RT Series and SR Document Series: Type 2.
    "OperatorsName": Action.EMPTY,
    # General Series (3), SR Document Series (2), DX Series (1C): kept, its UIDs remapped.
    "ReferencedPerformedProcedureStepSequence": Action.DUMMY,
    # References between instances of a study are kept, with their UIDs remapped consistently.
    "ReferencedImageSequence": Action.UID,
    "SourceImageSequence": Action.UID,
}


@dataclass(frozen=True)
class ProfileRule:
    """One row of PS3.15 Table E.1-1.

    Parameters
    ----------
    tag : str
        Eight hexadecimal digits, ``X`` for any digit of a repeating group, ``GGGGEEEE`` for the
        private-attribute row.
    name : str
        The attribute name as the standard prints it.
    basic : str
        The Basic Profile action code, possibly combined (``X/Z/D``).
    options : Mapping[ProfileOption, Action]
        The action each option that names this attribute prescribes.
    """

    tag: str
    name: str
    basic: str
    options: Mapping[ProfileOption, Action]

    def resolve(self, selected: frozenset[ProfileOption], keyword: str = "") -> Action:
        """Return the single action for this attribute under ``selected`` options.

        Parameters
        ----------
        selected : frozenset of ProfileOption
            The options the project applies.
        keyword : str, optional
            The attribute's DICOM keyword, used to settle combined actions.

        Returns
        -------
        Action
            The action the de-identifier carries out.
        """
        chosen = [action for option, action in self.options.items() if option in selected]
        if chosen:
            return Action.CLEAN if Action.CLEAN in chosen else chosen[0]
        codes = self.basic.replace("*", "").split("/")
        if len(codes) == 1:
            return Action(codes[0])
        preferred = CONFORMANCE_ACTIONS.get(keyword)
        if preferred is not None and preferred.value in codes:
            return preferred
        return Action(codes[0])


def parse_rules(
    table: Iterable[tuple[str, str, str, str]] = PROFILE_TABLE,
) -> list[ProfileRule]:
    """Parse rows of the profile table into :class:`ProfileRule` objects.

    Parameters
    ----------
    table : iterable of tuple
        Rows ``(tag, name, basic_action, "option=action ...")``.

    Returns
    -------
    list of ProfileRule
        One rule per row, in table order.
    """
    rules = []
    for tag, name, basic, options in table:
        parsed: dict[ProfileOption, Action] = {}
        for pair in options.split():
            option, action = pair.split("=")
            parsed[ProfileOption(option)] = Action(action)
        rules.append(ProfileRule(tag=tag, name=name, basic=basic, options=parsed))
    return rules


class Profile:
    """The confidentiality profile with a fixed set of options, resolved to one action per tag.

    Parameters
    ----------
    options : iterable of ProfileOption
        The options to apply on top of the Basic Profile.

    Raises
    ------
    ConfigError
        If both *Retain Longitudinal Temporal Information* options are selected.
    """

    def __init__(self, options: Iterable[ProfileOption] = DEFAULT_OPTIONS) -> None:
        from pydicom.datadict import keyword_for_tag

        self.options = frozenset(ProfileOption(o) for o in options)
        if {
            ProfileOption.RETAIN_LONG_FULL_DATES,
            ProfileOption.RETAIN_LONG_MODIFIED_DATES,
        } <= self.options:
            raise ConfigError(
                "The options retain-long-full-dates and retain-long-modified-dates exclude each "
                "other: keep real dates or shift them, not both. Drop one of the two."
            )
        self.rules = parse_rules()
        self._exact: dict[int, Action] = {}
        self._masked: list[tuple[int, int, Action]] = []
        self.private_action = Action.REMOVE
        for rule in self.rules:
            if rule.tag == "GGGGEEEE":
                self.private_action = rule.resolve(self.options)
            elif "X" in rule.tag:
                mask = int("".join("0" if c == "X" else "F" for c in rule.tag), 16)
                value = int(rule.tag.replace("X", "0"), 16)
                self._masked.append((mask, value, rule.resolve(self.options)))
            else:
                tag = int(rule.tag, 16)
                self._exact[tag] = rule.resolve(self.options, keyword_for_tag(tag))

    def action(self, tag: int) -> Action | None:
        """Return the action for a standard (even-group) tag, or ``None`` if the table omits it.

        Parameters
        ----------
        tag : int
            The DICOM tag as a 32-bit integer.

        Returns
        -------
        Action or None
            The resolved action; ``None`` means the profile does not list the attribute.
        """
        found = self._exact.get(tag)
        if found is not None or (tag >> 24) not in (0x50, 0x60):
            return found
        for mask, value, action in self._masked:  # curves (50xx) and overlays (60xx)
            if tag & mask == value:
                return action
        return None

    @property
    def shifts_dates(self) -> bool:
        """Whether dates are kept, shifted by a constant (modified dates option)."""
        return ProfileOption.RETAIN_LONG_MODIFIED_DATES in self.options

    @property
    def keeps_dates(self) -> bool:
        """Whether real dates are kept (full dates option)."""
        return ProfileOption.RETAIN_LONG_FULL_DATES in self.options
