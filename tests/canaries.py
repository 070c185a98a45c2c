"""Canaries for side-channel tests: a unique string in every free-form string of a header.

Each canary (``QZV`` + five digits + ``Q``) is a string nothing in scrubber produces, so finding
one (or even the prefix ``QZV``, which catches a partial OCR read or a truncated value) anywhere
but in the places allowed to hold PHI is a leak.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from scrubber.deid.uids import is_well_known_uid

PREFIX: Final = "QZV"
#: Value representations of free-form strings: every one of them gets a canary.
STRING_VRS: Final = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE"})
#: Instance UIDs (originals): they must not reach a side channel either.
INSTANCE_UIDS: Final = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)


class Canaries:
    """Issue unique canaries, plant them in data sets, and find them in bytes."""

    def __init__(self, start: int = 0) -> None:
        self.issued: list[str] = []
        self.uids: set[str] = set()
        self._next = start

    def next(self) -> str:
        """Return a new canary."""
        value = f"{PREFIX}{self._next:05d}Q"
        self._next += 1
        self.issued.append(value)
        return value

    def _value(self, vr: str) -> str:
        if vr == "PN":
            return f"{self.next()}^{self.next()}"
        return self.next()

    def plant(self, ds: Dataset, *, private: bool = True) -> int:
        """Put a canary in every free-form string element of ``ds``, at every depth.

        Private creators are left as they are (they say whose block it is); with ``private``,
        a private block with a string and a nested sequence of strings is added. Original
        instance UIDs are remembered (see :attr:`uids`). Returns how many elements changed.
        """
        count = self._plant(ds)
        if private:
            block = ds.private_block(0x0013, "QZV SIDE CHANNEL", create=True)
            block.add_new(0x01, "LO", self.next())
            block.add_new(0x02, "UT", f"note {self.next()}")
            item = Dataset()
            item.add_new(0x00100010, "PN", self._value("PN"))  # Patient's Name, nested
            block.add_new(0x03, "SQ", [item])
            count += 4
        for keyword in INSTANCE_UIDS:
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 10 and not is_well_known_uid(value):
                self.uids.add(value)
        return count

    def _plant(self, ds: Dataset) -> int:
        count = 0
        for element in list(ds):
            if element.VR == "SQ":
                for item in element.value or []:
                    count += self._plant(item)
                continue
            if element.tag.is_private_creator or element.VR not in STRING_VRS:
                continue
            if element.tag.group == 0x0008 and element.tag.element == 0x0005:
                continue  # Specific Character Set (CS anyway)
            value = element.value
            if isinstance(value, MultiValue | list | tuple) and len(value) > 1:
                ds[element.tag] = DataElement(
                    element.tag, element.VR, [self._value(element.VR) for _ in value]
                )
            else:
                ds[element.tag] = DataElement(element.tag, element.VR, self._value(element.VR))
            count += 1
        return count

    def leaks(self, data: bytes | str, *, uids: bool = True) -> list[str]:
        """Return the canaries (and original UIDs) found in ``data``; ``QZV`` alone counts too."""
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        found = [c for c in self.issued if c.encode() in raw]
        if uids:
            found += [u for u in sorted(self.uids) if u.encode() in raw]
        if not found and PREFIX.encode() in raw:
            at = raw.index(PREFIX.encode())
            found.append(raw[at : at + 12].decode("ascii", "replace"))
        return found


def leaks_by_place(canaries: Canaries, places: dict[str, bytes | str]) -> dict[str, list[str]]:
    """Map each place to the canaries found there, leaving out places with none."""
    found = {where: canaries.leaks(data) for where, data in places.items()}
    return {where: hits for where, hits in found.items() if hits}


def joined(parts: Iterable[bytes]) -> bytes:
    """Concatenate byte strings with a separator no canary spans."""
    return b"\n--\n".join(parts)
