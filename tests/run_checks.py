"""Checks of a finished ``scrubber run``: every input in exactly one place, all records agreeing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def input_names(source: Path) -> list[str]:
    """Every file under ``source``, relative, sorted (what a run must account for)."""
    return sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())


def check_one_place(
    source: Path, out: Path, quarantine: Path, report: Path
) -> list[dict[str, Any]]:
    """Every input is in exactly one place, and the report and the ledger say where."""
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    names = input_names(source)
    assert [r["input"] for r in rows] == names
    held = {
        p.relative_to(quarantine).as_posix().split("/", 1)[1]
        for p in quarantine.rglob("*")
        if p.is_file() and p.suffix not in (".json", ".png")
    }
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for row in rows:
        name, outcome = row["input"], row["outcome"]
        assert (name in written) == (outcome in ("clean", "scrubbed")), row
        assert (name in held) == (outcome == "quarantined"), row
        if outcome == "skipped":
            assert row["output"] is None
        else:
            assert Path(row["output"]).is_file(), row
    assert written | held <= set(names)
    leftovers = [p for root in (out, quarantine) for p in root.rglob(".*.tmp")]
    assert leftovers == []
    ledger = out.with_name(out.name + ".ledger.sqlite")
    with sqlite3.connect(ledger) as db:
        states = dict(db.execute("SELECT input, state FROM inputs").fetchall())
    assert states == {name: "done" for name in names}
    return rows
