"""Resolving the profile's actions under options."""

from __future__ import annotations

import pytest

from scrubber.deid.profile import Action, Profile, ProfileOption
from scrubber.errors import ConfigError

STUDY_DATE = 0x00080020
SERIES_DESCRIPTION = 0x0008103E
PATIENT_AGE = 0x00101010
CALIBRATION_DATE = 0x0018700C
OPERATORS_NAME = 0x00081070
STATION_NAME = 0x00081010
CONTENT_DATE = 0x00080023
REFERENCED_IMAGE_SEQUENCE = 0x00081140
SOP_INSTANCE_UID = 0x00080018


def test_basic_profile_actions() -> None:
    basic = Profile([])
    assert basic.action(STUDY_DATE) is Action.EMPTY
    assert basic.action(SERIES_DESCRIPTION) is Action.REMOVE
    assert basic.action(PATIENT_AGE) is Action.REMOVE
    assert basic.action(SOP_INSTANCE_UID) is Action.UID
    assert basic.action(0x00280010) is None  # Rows: not in the table, kept


def test_options_replace_the_basic_action() -> None:
    profile = Profile(
        [
            ProfileOption.RETAIN_LONG_MODIFIED_DATES,
            ProfileOption.CLEAN_DESCRIPTORS,
            ProfileOption.RETAIN_PATIENT_CHARS,
            ProfileOption.RETAIN_UIDS,
        ]
    )
    assert profile.action(STUDY_DATE) is Action.CLEAN
    assert profile.action(SERIES_DESCRIPTION) is Action.CLEAN
    assert profile.action(PATIENT_AGE) is Action.KEEP
    assert profile.action(SOP_INSTANCE_UID) is Action.KEEP


def test_clean_wins_over_keep_when_several_options_name_an_attribute() -> None:
    profile = Profile([ProfileOption.RETAIN_DEVICE_ID, ProfileOption.RETAIN_LONG_MODIFIED_DATES])
    assert profile.action(CALIBRATION_DATE) is Action.CLEAN
    assert Profile([ProfileOption.RETAIN_DEVICE_ID]).action(CALIBRATION_DATE) is Action.KEEP


def test_combined_actions_prefer_removal_unless_conformance_needs_a_value() -> None:
    basic = Profile([])
    assert basic.action(STATION_NAME) is Action.REMOVE  # X/Z/D, Type 3
    assert basic.action(OPERATORS_NAME) is Action.EMPTY  # X/Z/D, Type 2 in RT Series
    assert basic.action(CONTENT_DATE) is Action.DUMMY  # Z/D, Type 1 in enhanced IODs
    assert basic.action(REFERENCED_IMAGE_SEQUENCE) is Action.UID  # X/Z/U*, references kept


def test_repeating_groups_and_private_rows() -> None:
    basic = Profile([])
    assert basic.action(0x60023000) is Action.REMOVE  # overlay data, any even 60xx group
    assert basic.action(0x50001234) is Action.REMOVE  # curves
    assert basic.private_action is Action.REMOVE
    assert Profile([ProfileOption.RETAIN_SAFE_PRIVATE]).private_action is Action.CLEAN


def test_both_date_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        Profile([ProfileOption.RETAIN_LONG_FULL_DATES, ProfileOption.RETAIN_LONG_MODIFIED_DATES])


def test_option_codes_are_the_dcm_codes() -> None:
    assert ProfileOption.RETAIN_LONG_MODIFIED_DATES.code == "113107"
    assert ProfileOption.RETAIN_INSTITUTION_ID.code == "113112"
    assert {o.code for o in ProfileOption} == {str(c) for c in range(113103, 113113)}
