"""Date shifting for DA and DT values (the *Modified Dates* option).

Dates move by a whole number of days, so times of day, weekdays-to-interval arithmetic and the
intervals between any two dates of a project (or of a patient) survive while the real calendar dates
do not. Values that cannot be parsed as dates are not passed through: the caller empties them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

__all__ = ["DateShifter", "UnparsableDateError", "shift_days_from_secret"]

MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3 * 365


class UnparsableDateError(ValueError):
    """A DA or DT value is not a date this module can shift (the value is not included)."""


def shift_days_from_secret(secret: bytes, scope: str = "project") -> int:
    """Derive a date shift in days from the project secret.

    Parameters
    ----------
    secret : bytes
        The project secret.
    scope : str, optional
        ``"project"`` for the project-wide shift, or a per-patient key.

    Returns
    -------
    int
        A negative number of days between ``-MAX_SHIFT_DAYS`` and ``-MIN_SHIFT_DAYS``.
    """
    digest = hmac.new(secret, b"scrubber/date-shift/" + scope.encode(), hashlib.sha256).digest()
    span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
    return -(MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % span)


def _shift_date_part(text: str, days: int) -> str:
    """Shift a ``YYYY``, ``YYYYMM`` or ``YYYYMMDD`` string, keeping its precision."""
    if not (text.isascii() and text.isdigit()) or len(text) not in (4, 6, 8):
        raise UnparsableDateError("not a DICOM date")
    year = int(text[:4])
    month = int(text[4:6]) if len(text) >= 6 else 1
    day = int(text[6:8]) if len(text) == 8 else 1
    try:
        shifted = dt.date(year, month, day) + dt.timedelta(days=days)
    except (ValueError, OverflowError) as exc:
        raise UnparsableDateError("not a valid calendar date") from exc
    return shifted.strftime("%Y%m%d")[: len(text)]


class DateShifter:
    """Shift DA and DT values by a fixed number of days.

    Parameters
    ----------
    days : int
        The shift; negative moves dates into the past.
    """

    def __init__(self, days: int) -> None:
        self.days = days

    def shift_da(self, value: str) -> str:
        """Shift one DA value (a date or a ``date-date`` range).

        Parameters
        ----------
        value : str
            The DA value, possibly padded.

        Returns
        -------
        str
            The shifted value.

        Raises
        ------
        UnparsableDateError
            If the value is not a date.
        """
        value = value.strip(" \x00")
        if "-" in value:
            start, _, end = value.partition("-")
            return "-".join(self.shift_da(part) if part else "" for part in (start, end))
        if len(value) == 10 and value[4] == "." and value[7] == ".":  # ACR-NEMA YYYY.MM.DD
            value = value.replace(".", "")
        if len(value) != 8:
            raise UnparsableDateError("not a DICOM date")
        return _shift_date_part(value, self.days)

    def shift_dt(self, value: str) -> str:
        """Shift one DT value, keeping its time part, fraction and UTC offset.

        Parameters
        ----------
        value : str
            The DT value (``YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]``) or a ``dt-dt`` range.

        Returns
        -------
        str
            The shifted value.

        Raises
        ------
        UnparsableDateError
            If the value is not a date-time.
        """
        value = value.strip(" \x00")
        if _DT_RE.match(value):
            digits = min(8, len(value) - len(value.lstrip("0123456789")))
            head = value[: digits if digits in (4, 6, 8) else 4]
            return _shift_date_part(head, self.days) + value[len(head) :]
        for index, char in enumerate(value):
            if char != "-":
                continue
            start, end = value[:index], value[index + 1 :]
            if all(not part or _DT_RE.match(part) for part in (start, end)) and (start or end):
                return "-".join(self.shift_dt(part) if part else "" for part in (start, end))
        raise UnparsableDateError("not a DICOM date-time")


_DT_RE = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
