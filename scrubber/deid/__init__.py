"""Metadata de-identification: the PS3.15 Annex E Basic Profile, its options, and the project key.

Typical use::

    from scrubber.deid import DeidConfig, Deidentifier, KeyStore, default_key_path, resolve_secret

    store = KeyStore(default_key_path("ILIAC_CT"), "ILIAC_CT")
    secret, _ = resolve_secret(store)
    deid = Deidentifier(DeidConfig(project="ILIAC_CT"), secret, store)
    result = deid.deidentify(dataset)
"""

from __future__ import annotations

from scrubber.deid.engine import (
    DateShiftScope,
    DeidConfig,
    Deidentifier,
    DeidResult,
    DirectoryFileError,
    PrivateTagSpec,
    UnsupportedContentError,
)
from scrubber.deid.keystore import MAPPING_KINDS, KeyStore, default_key_path
from scrubber.deid.profile import DEFAULT_OPTIONS, Action, Profile, ProfileOption
from scrubber.deid.project_secret import SECRET_ENV, resolve_secret
from scrubber.deid.terms import HeaderTerms

__all__ = [
    "DEFAULT_OPTIONS",
    "MAPPING_KINDS",
    "SECRET_ENV",
    "Action",
    "DateShiftScope",
    "DeidConfig",
    "DeidResult",
    "Deidentifier",
    "DirectoryFileError",
    "HeaderTerms",
    "KeyStore",
    "PrivateTagSpec",
    "Profile",
    "ProfileOption",
    "UnsupportedContentError",
    "default_key_path",
    "resolve_secret",
]
