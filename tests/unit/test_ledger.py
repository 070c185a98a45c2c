"""The batch run's ledger: states, resume data, refusal of a foreign configuration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scrubber.errors import ConfigError
from scrubber.runner.ledger import Ledger, LedgerRow

PRINT = {"scrubber": "0.1.0", "classifier": "2.0.0", "policy": "all"}


def _row(name: str, outcome: str = "clean") -> LedgerRow:
    return LedgerRow(name, outcome, [], f"/out/{name}", 1, 0.5, {"classify": 0.1}, "ab" * 32)


def test_an_input_moves_from_started_through_committing_to_done(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", PRINT) as ledger:
        ledger.start("a.dcm", 10, 111)
        assert ledger.unsettled() == {"a.dcm": []} and ledger.finished() == {}
        ledger.committing("a.dcm", ["/out/a.dcm"])
        assert ledger.unsettled() == {"a.dcm": ["/out/a.dcm"]}
        ledger.finish(_row("a.dcm"), ["/out/a.dcm"])
        assert ledger.unsettled() == {}
        assert ledger.finished() == {"a.dcm": (10, 111)}
        assert [r.report() for r in ledger.rows()] == [
            {
                "input": "a.dcm",
                "outcome": "clean",
                "output": "/out/a.dcm",
                "reasons": [],
                "frames": 1,
                "seconds": 0.5,
            }
        ]


def test_the_ledger_survives_reopening_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path, PRINT) as ledger:
        ledger.start("b.dcm", 1, 2)
        ledger.finish(_row("b.dcm", "quarantined"), ["/q/b.dcm", "/q/b.dcm.json"])
        ledger.start("c.dcm", 1, 2)
    with Ledger(path, PRINT) as ledger:
        assert ledger.count() == 1
        assert ledger.previous_paths("b.dcm") == ["/q/b.dcm", "/q/b.dcm.json"]
        assert ledger.unsettled() == {"c.dcm": []}


def test_a_ledger_from_other_settings_is_refused_naming_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path, PRINT).close()
    with pytest.raises(ConfigError, match="policy differ"):
        Ledger(path, {**PRINT, "policy": "phi"})


def test_the_ledger_is_owner_only_because_input_paths_can_carry_names(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path, PRINT).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot be opened"):
        Ledger(path, PRINT)


def _states(path: Path) -> dict[str, str]:
    """The rows as another connection sees them (what a kill would leave)."""
    import sqlite3

    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT input, state FROM inputs").fetchall())


def test_start_and_finish_later_wait_for_the_next_write_and_go_with_it(tmp_path: Path) -> None:
    """One transaction per input on the driver's path: each waiting write, lost to a kill,
    leaves the input not done (redone), never done with its files missing."""
    path = tmp_path / "l.sqlite"
    with Ledger(path, PRINT) as ledger:
        ledger.start("a.dcm", 10, 111)
        ledger.start("b.dcm", 20, 222)
        assert _states(path) == {}  # a kill now: nothing recorded, both simply redone
        ledger.committing("a.dcm", ["/out/a.dcm"])
        assert _states(path) == {"a.dcm": "committing", "b.dcm": "started"}
        ledger.finish_later(_row("a.dcm"), ["/out/a.dcm"])
        assert _states(path)["a.dcm"] == "committing"  # a kill now: its files removed, redone
        ledger.committing("b.dcm", ["/out/b.dcm"])
        assert _states(path) == {"a.dcm": "done", "b.dcm": "committing"}
        ledger.finish_later(_row("b.dcm"), ["/out/b.dcm"])
        assert ledger.finished() == {"a.dcm": (10, 111), "b.dcm": (20, 222)}  # reads write first
        ledger.start("c.dcm", 30, 333)
    assert _states(path) == {"a.dcm": "done", "b.dcm": "done", "c.dcm": "started"}  # close


def test_reads_work_while_another_program_holds_the_write_lock(tmp_path: Path) -> None:
    import sqlite3

    from scrubber.runner.ledger import LedgerError

    path = tmp_path / "l.sqlite"
    ledger = Ledger(path, PRINT)
    ledger.start("a.dcm", 10, 111)
    ledger.committing("a.dcm", ["/out/a.dcm"])
    ledger.finish_later(_row("a.dcm"), ["/out/a.dcm"])
    ledger._db.execute("PRAGMA busy_timeout = 100")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert ledger.unsettled() == {"a.dcm": ["/out/a.dcm"]}  # read without what waits
        with pytest.raises(LedgerError, match="locked by another program"):
            ledger.committing("b.dcm", [])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ledger.finished() == {"a.dcm": (10, 111)}  # what waited is written once it can be
    ledger.close()
