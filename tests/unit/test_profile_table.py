"""The shipped profile table against the standard's table (PS3.15 E.1-1) as data."""

from __future__ import annotations

import json

from scrubber.deid.profile import Action, Profile, ProfileOption, parse_rules
from scrubber.deid.profile_table import PROFILE_TABLE
from tests.conftest import REFERENCE, require_shared

OPTION_COLUMNS = {
    "rtnLongFullDatesOpt": ProfileOption.RETAIN_LONG_FULL_DATES,
    "rtnLongModifDatesOpt": ProfileOption.RETAIN_LONG_MODIFIED_DATES,
    "rtnPatCharsOpt": ProfileOption.RETAIN_PATIENT_CHARS,
    "rtnDevIdOpt": ProfileOption.RETAIN_DEVICE_ID,
    "rtnInstIdOpt": ProfileOption.RETAIN_INSTITUTION_ID,
    "rtnUIDsOpt": ProfileOption.RETAIN_UIDS,
    "rtnSafePrivOpt": ProfileOption.RETAIN_SAFE_PRIVATE,
    "cleanDescOpt": ProfileOption.CLEAN_DESCRIPTORS,
    "cleanStructContOpt": ProfileOption.CLEAN_STRUCTURED_CONTENT,
    "cleanGraphOpt": ProfileOption.CLEAN_GRAPHICS,
}


def _reference_tag(entry: dict[str, str]) -> str:
    tag = entry["tag"].strip("()").replace(",", "").upper()
    return "GGGGEEEE" if tag.startswith("GGGG") else tag


def test_table_covers_every_attribute_of_the_reference_with_the_same_actions() -> None:
    path = require_shared(
        REFERENCE / "confidentiality_profile_attributes.json", "The PS3.15 reference table"
    )
    reference = json.loads(path.read_text(encoding="utf-8"))
    ours = {rule.tag: rule for rule in parse_rules()}
    assert len(reference) > 600
    missing, different = [], []
    for entry in reference:
        tag = _reference_tag(entry)
        rule = ours.get(tag)
        if rule is None:
            missing.append(entry["tag"])
            continue
        expected = {
            OPTION_COLUMNS[column]: Action(value)
            for column, value in entry.items()
            if column in OPTION_COLUMNS and value
        }
        if rule.basic != entry["basicProfile"] or dict(rule.options) != expected:
            different.append(entry["tag"])
    assert missing == []
    assert different == []


def test_every_row_parses_into_known_actions_and_options() -> None:
    rules = parse_rules()
    assert len(rules) == len(PROFILE_TABLE)
    for rule in rules:
        for code in rule.basic.replace("*", "").split("/"):
            Action(code)
    # Every option appears in the table at least once.
    named = {option for rule in rules for option in rule.options}
    assert named == set(ProfileOption)


def test_every_standard_tag_resolves_under_every_single_option() -> None:
    for option in ProfileOption:
        profile = Profile([option])
        for rule in profile.rules:
            if "X" not in rule.tag and "G" not in rule.tag:
                assert profile.action(int(rule.tag, 16)) is not None
