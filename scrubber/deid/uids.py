"""Keyed, deterministic UID remapping.

A UID is replaced by ``2.25.<n>`` where ``n`` is 128 bits of HMAC-SHA256 of the UID under the
project secret, shaped as an RFC 9562 version-8 UUID. The same UID maps to the same new UID in every
file of a project and in every run; without the secret the mapping can neither be reproduced nor
reversed by hashing candidate UIDs (which a bare hash would allow).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["UIDRemapper", "is_well_known_uid"]


def is_well_known_uid(uid: str) -> bool:
    """Return whether ``uid`` is a UID defined by the DICOM standard (SOP class, syntax, ...).

    Parameters
    ----------
    uid : str
        The UID string.

    Returns
    -------
    bool
        ``True`` for UIDs under the DICOM root (``1.2.840.10008``): SOP classes, transfer
        syntaxes, coding schemes. They identify no one and must be kept.
    """
    return uid.startswith("1.2.840.10008.")


class UIDRemapper:
    """Map instance UIDs to keyed ``2.25`` UIDs.

    Parameters
    ----------
    secret : bytes
        The project secret.
    """

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"scrubber/uid", hashlib.sha256).digest()
        self._cache: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        """Return the replacement for ``uid`` (well-known UIDs are returned unchanged).

        Parameters
        ----------
        uid : str
            The original UID; surrounding spaces and NUL padding are ignored.

        Returns
        -------
        str
            A valid UID of at most 44 characters.
        """
        uid = uid.strip(" \x00")
        if not uid or is_well_known_uid(uid):
            return uid
        cached = self._cache.get(uid)
        if cached is not None:
            return cached
        digest = hmac.new(self._key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
        value = bytearray(digest[:16])
        value[6] = (value[6] & 0x0F) | 0x80  # UUID version 8 (custom)
        value[8] = (value[8] & 0x3F) | 0x80  # RFC 9562 variant
        new = f"2.25.{int.from_bytes(value, 'big')}"
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[uid] = new
        return new
