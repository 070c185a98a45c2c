"""The batch run's ledger: one SQLite row per input, so that a rerun resumes and loses nothing.

Every input moves through three states, each committed before the next step on disk:

``started``
    The driver handed the input to a worker. Nothing of it is in the output or the quarantine
    yet, except hidden temporary files.
``committing``
    The worker staged every file the input produces (hidden temporaries, flushed to disk); the
    ledger lists their final paths; the driver is renaming them into place.
``done``
    The files are in place; the row holds the outcome, reasons, figures and versions.

Two writes wait for the next one and go with it, in one transaction (three transactions per
input were a fifth of the driver's time on a clean series): :meth:`Ledger.start` and
:meth:`Ledger.finish_later`. Either, lost to a kill, loses nothing: without its ``started`` row
an input is simply not done (its hidden temporaries are swept, and it is processed again), and
without its ``done`` an input stays ``committing`` with its final paths (removed, and the input
processed again). Every read, :meth:`Ledger.flush` and :meth:`Ledger.close` write what waits.

A run killed at any moment leaves rows in ``started`` or ``committing``. :meth:`Ledger.unsettled`
returns them with the final paths recorded so far; the batch run removes those paths (a
half-renamed set must not stay beside a rerun's output), sweeps the temporaries and processes the
inputs again. The ledger lives outside the research output by default: input paths can carry
patient names.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from scrubber.errors import ConfigError, ScrubberError

__all__ = ["Ledger", "LedgerError", "LedgerRow"]


class LedgerError(ScrubberError):
    """The ledger cannot be written (another program holds a lock on it, or the disk failed).

    The run stops; what is recorded as done stays done, and rerunning the same command finishes
    the rest.
    """

    reason = "ledger"


SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    input TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('started', 'committing', 'done')),
    digest TEXT,
    outcome TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    output TEXT,
    paths TEXT NOT NULL DEFAULT '[]',
    frames INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    stages TEXT NOT NULL DEFAULT '{}',
    versions TEXT NOT NULL DEFAULT '{}',
    updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class LedgerRow:
    """One finished input, as the ledger records it (paths, slugs and figures: no PHI).

    Attributes
    ----------
    input : str
        The input's path relative to the run's input root (a file input: its name).
    outcome : str
        ``clean``, ``scrubbed``, ``quarantined``, ``skipped`` or (after review) ``rejected``.
    reasons : list of str
        Quarantine or skip reasons (empty for released inputs).
    output : str or None
        Where the input ended up: the output file, the quarantined copy, or nothing (skipped).
    frames : int
        Frames in the instance.
    seconds : float
        Wall time in the worker.
    stages : dict
        Seconds per pipeline stage.
    digest : str or None
        SHA-256 of the input file.
    versions : dict
        Model, engine and configuration versions the input was processed with.
    """

    input: str
    outcome: str
    reasons: list[str]
    output: str | None
    frames: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    digest: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """Return the row as one line of the ``--report`` file."""
        return {
            "input": self.input,
            "outcome": self.outcome,
            "output": self.output,
            "reasons": self.reasons,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
        }


class Ledger:
    """The SQLite ledger of one output tree (written by the driver process only).

    Parameters
    ----------
    path : Path
        The database file (created with its folder if missing).
    fingerprint : mapping of str to str
        What makes outputs reproducible: scrubber, model and engine versions, the policy, the
        project and the layout. A ledger written under another fingerprint is refused: mixing
        outputs of two configurations in one tree would make the tree unexplainable.

    Raises
    ------
    ConfigError
        If the file is not a scrubber ledger, has a newer schema, or was written with another
        configuration.
    """

    def __init__(self, path: Path, fingerprint: Mapping[str, str] | None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # input paths can carry patient names: owner-only, like the key store
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except OSError as exc:
            raise ConfigError(
                f"The ledger {self.path} cannot be created ({exc.strerror}); check the folder "
                "and its permissions, or give another --ledger path."
            ) from None
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise ConfigError(
                    f"The ledger {self.path} cannot be opened ({type(exc).__name__}); check the "
                    "disk and the file, or give another --ledger path."
                ) from None
            raise ConfigError(
                f"The ledger {self.path} is locked by another program (an open sqlite3 "
                "session, a backup tool?); close it and run again."
            ) from None
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"The ledger {self.path} cannot be opened as a scrubber ledger ({exc}); give "
                "another --ledger path or remove the file."
            ) from None
        #: Writes waiting for the next one (see the module's docstring).
        self._waiting: list[tuple[str, tuple[object, ...]]] = []
        if fingerprint is not None:
            self._check_meta(dict(fingerprint))

    @property
    def fingerprint(self) -> dict[str, str]:
        """Return the settings the ledger was started with."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        loaded: dict[str, str] = json.loads(row[0]) if row else {}
        return loaded

    def _check_meta(self, fingerprint: dict[str, str]) -> None:
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            self._write(
                "INSERT INTO meta VALUES ('schema', ?), ('fingerprint', ?), ('created', ?)",
                (str(SCHEMA_VERSION), json.dumps(fingerprint, sort_keys=True), _now()),
            )
            return
        if int(stored.get("schema", "0")) > SCHEMA_VERSION:
            raise ConfigError(
                f"The ledger {self.path} was written by a newer scrubber; upgrade scrubber or "
                "give another --ledger path."
            )
        before = json.loads(stored.get("fingerprint", "{}"))
        changed = sorted(
            k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k)
        )
        if changed:
            raise ConfigError(
                f"The output was started with other settings ({', '.join(changed)} differ); "
                "finish it with the same settings, or write to a new output folder and ledger."
            )

    def close(self) -> None:
        """Write what waits (if the ledger can be written) and close the database."""
        try:
            self._settle()
        finally:
            self._db.close()

    def _settle(self) -> None:
        """Write what waits before a read; if the ledger cannot be written now, read without.

        What waits can wait or be lost (see the module's docstring); a read must still work
        while another program holds the write lock (the run stops, and its report is written).
        """
        with contextlib.suppress(LedgerError):
            self.flush()

    def flush(self) -> None:
        """Write the waiting writes now (one transaction).

        Raises
        ------
        LedgerError
            If the ledger cannot be written (they wait on).
        """
        if self._waiting:
            self._transaction([])

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _write(self, sql: str, parameters: tuple[object, ...]) -> sqlite3.Cursor:
        """Run one write statement, after the waiting ones, in one transaction."""
        return self._transaction([(sql, parameters)])

    def _transaction(self, statements: list[tuple[str, tuple[object, ...]]]) -> sqlite3.Cursor:
        """Run the waiting writes and ``statements`` in one transaction; return the last cursor.

        A lock held elsewhere or a disk error is a typed error (nothing of it is written, and
        the waiting writes wait on).
        """
        todo = [*self._waiting, *statements]
        try:
            if len(todo) == 1:
                cursor = self._db.execute(*todo[0])
            else:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, parameters in todo:
                        cursor = self._db.execute(sql, parameters)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            self._waiting.clear()
            return cursor
        except sqlite3.OperationalError as exc:
            locked = "locked" in str(exc) or "busy" in str(exc)
            raise LedgerError(
                f"The ledger {self.path} "
                + (
                    "is locked by another program (an open sqlite3 session, a backup tool?)"
                    if locked
                    else f"cannot be written ({type(exc).__name__})"
                )
                + "; the run stops here. What is done stays done: close the other program (or "
                "free the disk) and rerun the same command to finish the rest."
            ) from None

    def finished(self) -> dict[str, tuple[int, int]]:
        """Return inputs already done, with the size and modification time they had then."""
        self._settle()
        rows = self._db.execute("SELECT input, size, mtime_ns FROM inputs WHERE state = 'done'")
        return {name: (size, mtime) for name, size, mtime in rows}

    def unsettled(self) -> dict[str, list[str]]:
        """Return inputs a killed run left unfinished, with their final paths."""
        self._settle()
        rows = self._db.execute("SELECT input, paths FROM inputs WHERE state != 'done'")
        return {name: json.loads(paths) for name, paths in rows}

    def names(self) -> set[str]:
        """Return every input the ledger has a row for, whatever its state."""
        self._settle()
        return {name for (name,) in self._db.execute("SELECT input FROM inputs")}

    def previous_paths(self, name: str) -> list[str]:
        """Return the final paths recorded for an input (removed before it is redone)."""
        self._settle()
        row = self._db.execute("SELECT paths FROM inputs WHERE input = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else []

    def start(self, name: str, size: int, mtime_ns: int) -> None:
        """Record that ``name`` was handed to a worker (written with the next write).

        The final paths of an earlier run of the same input stay recorded until the new ones
        replace them, so that a rerun of a changed input removes what the old one left.
        """
        self._waiting.append(
            (
                "INSERT INTO inputs (input, size, mtime_ns, state, updated) "
                "VALUES (?, ?, ?, 'started', ?) ON CONFLICT(input) DO UPDATE SET "
                "size = excluded.size, mtime_ns = excluded.mtime_ns, state = 'started', "
                "updated = excluded.updated",
                (name, size, mtime_ns, time.time()),
            )
        )

    def committing(self, name: str, paths: list[str]) -> None:
        """Record the final paths of ``name``'s staged files before they are renamed."""
        self._write(
            "UPDATE inputs SET state = 'committing', paths = ?, updated = ? WHERE input = ?",
            (json.dumps(paths), time.time(), name),
        )

    def reset(self, name: str) -> None:
        """Put ``name`` back to ``started`` with no final paths (its files were removed)."""
        self._write(
            "UPDATE inputs SET state = 'started', paths = '[]', updated = ? WHERE input = ?",
            (time.time(), name),
        )

    def finish(self, row: LedgerRow, paths: list[str]) -> None:
        """Record ``row`` as done; ``paths`` are every file it produced."""
        self._write(*_finish(row, paths))

    def finish_later(self, row: LedgerRow, paths: list[str]) -> None:
        """Record ``row`` as done with the next write (see :meth:`finish`)."""
        self._waiting.append(_finish(row, paths))

    def rows(self) -> Iterator[LedgerRow]:
        """Every finished input, sorted by input path."""
        self._settle()
        query = (
            "SELECT input, outcome, reasons, output, frames, seconds, stages, digest, versions "
            "FROM inputs WHERE state = 'done' ORDER BY input"
        )
        for (
            name,
            outcome,
            reasons,
            output,
            frames,
            seconds,
            stages,
            digest,
            versions,
        ) in self._db.execute(query):
            yield LedgerRow(
                input=name,
                outcome=outcome,
                reasons=json.loads(reasons),
                output=output,
                frames=frames,
                seconds=seconds,
                stages=json.loads(stages),
                digest=digest,
                versions=json.loads(versions),
            )

    def count(self) -> int:
        """How many inputs are done."""
        self._settle()
        return int(
            self._db.execute("SELECT COUNT(*) FROM inputs WHERE state = 'done'").fetchone()[0]
        )

    def review(self, name: str, outcome: str, reasons: list[str], paths: list[str]) -> bool:
        """Record a reviewer's decision on a held input; return whether the ledger knew it.

        Parameters
        ----------
        name : str
            The input, as the ledger names it.
        outcome : str
            ``clean`` or ``scrubbed`` (released) or ``rejected``.
        reasons : list of str
            Reason slugs (the quarantine reason and the decision).
        paths : list of str
            The files the input now has (the output; none when rejected).
        """
        cursor = self._write(
            "UPDATE inputs SET outcome = ?, reasons = ?, output = ?, paths = ?, updated = ? "
            "WHERE input = ? AND state = 'done'",
            (
                outcome,
                json.dumps(reasons),
                paths[0] if paths else None,
                json.dumps(paths),
                time.time(),
                name,
            ),
        )
        return cursor.rowcount > 0

    def forget(self, name: str) -> None:
        """Drop an input that no longer exists in the input tree."""
        self._write("DELETE FROM inputs WHERE input = ?", (name,))


def _finish(row: LedgerRow, paths: list[str]) -> tuple[str, tuple[object, ...]]:
    return (
        "UPDATE inputs SET state = 'done', digest = ?, outcome = ?, reasons = ?, output = ?, "
        "paths = ?, frames = ?, seconds = ?, stages = ?, versions = ?, updated = ? "
        "WHERE input = ?",
        (
            row.digest,
            row.outcome,
            json.dumps(row.reasons),
            row.output,
            json.dumps(paths),
            row.frames,
            row.seconds,
            json.dumps(row.stages),
            json.dumps(row.versions),
            time.time(),
            row.input,
        ),
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
