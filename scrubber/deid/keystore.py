"""The re-identification key: a per-project SQLite file kept apart from every output.

It holds what a project needs to stay consistent across runs and what a data steward needs to go
back from a pseudonym to the patient:

* the per-patient index behind pseudonyms such as ``ILIAC_CT_001`` (assigned once, in order of first
  sight, so that reruns and later batches reuse it);
* the mapping of original patient IDs, names, accession numbers and UIDs to their replacements,
  exportable as ``id_old,id_new`` CSV per kind;
* the project secret when scrubber generated it (a secret given by file or environment is never
  stored; only its fingerprint is, so that a run with a different secret is refused).

The file is created with mode 0600 in a directory created 0700; SQLite gives its WAL and journal
files the same mode.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TextIO

from scrubber.errors import KeyStoreError

__all__ = ["MAPPING_KINDS", "KeyStore", "default_key_path"]

SCHEMA_VERSION = "1"

MAPPING_KINDS = ("patient_id", "patient_name", "accession", "study_uid", "series_uid", "uid")
"""Kinds of mapping the key records (``uid`` covers every remapped UID but study and series)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (
    patient_key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mapping (
    kind TEXT NOT NULL,
    original TEXT NOT NULL,
    replacement TEXT NOT NULL,
    PRIMARY KEY (kind, original)
) WITHOUT ROWID;
"""


def default_key_path(project: str) -> Path:
    """Return where a project's key lives unless the user names a file.

    Parameters
    ----------
    project : str
        The project name.

    Returns
    -------
    Path
        ``$SCRUBBER_HOME/projects/<project>/reid-key.sqlite``; ``SCRUBBER_HOME`` defaults to
        ``$XDG_DATA_HOME/scrubber`` or ``~/.local/share/scrubber``.
    """
    home = os.environ.get("SCRUBBER_HOME")
    if home:
        base = Path(home)
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".local" / "share") / "scrubber"
    return base / "projects" / project / "reid-key.sqlite"


def secret_fingerprint(secret: bytes) -> str:
    """Return a fingerprint that tells two secrets apart without revealing either.

    Parameters
    ----------
    secret : bytes
        The project secret.

    Returns
    -------
    str
        Sixteen hexadecimal digits.
    """
    return hmac.new(secret, b"scrubber/fingerprint", hashlib.sha256).hexdigest()[:16]


class KeyStore:
    """A project's re-identification key.

    Parameters
    ----------
    path : Path
        The SQLite file; created (with its directory) if missing.
    project : str
        The project the key belongs to; a key of another project is refused.

    Raises
    ------
    KeyStoreError
        If the file cannot be created or opened, or belongs to another project.
    """

    def __init__(self, path: Path, project: str) -> None:
        self.path = Path(path)
        self.project = project
        self._pending: list[tuple[str, str, str]] = []
        try:
            self._create_file()
            # one connection, usable from the thread that calls next (a server's worker threads
            # take turns through a lock of their own; the store itself is not thread-safe)
            self._db = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            with self._transaction():
                stored = self._meta("project")
                if stored is None:
                    self._set_meta("project", project)
                    self._set_meta("schema_version", SCHEMA_VERSION)
                    self._set_meta("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        except (OSError, sqlite3.Error) as exc:
            raise KeyStoreError(
                f"Cannot open the re-identification key {self.path}: {type(exc).__name__}. "
                "Check that the directory is writable and the file is a scrubber key."
            ) from exc
        if stored is not None and stored != project:
            self._db.close()
            raise KeyStoreError(
                f"The key {self.path} belongs to another project, not to '{project}'. "
                "Use that project's name, or give this project its own --key-file."
            )

    def _create_file(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                os.chmod(self.path, 0o600)
        else:
            os.close(fd)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- secret -------------------------------------------------------------------------------

    def stored_secret(self) -> bytes | None:
        """Return the secret scrubber generated for this project, if it did.

        Returns
        -------
        bytes or None
            The stored secret, or ``None`` when the project's secret comes from elsewhere.
        """
        value = self._meta("secret")
        return None if value is None else value.encode("ascii")

    def bind_secret(self, secret: bytes, *, store: bool) -> None:
        """Check ``secret`` against the one this key was made with, or record it if it is new.

        Parameters
        ----------
        secret : bytes
            The secret the run uses.
        store : bool
            Store the secret itself (only for a secret scrubber generated).

        Raises
        ------
        KeyStoreError
            If the key was made with a different secret: pseudonyms and UIDs would not match.
        """
        fingerprint = secret_fingerprint(secret)
        with self._transaction():
            known = self._meta("secret_fingerprint")
            if known is None:
                self._set_meta("secret_fingerprint", fingerprint)
                if store:
                    self._set_meta("secret", secret.decode("ascii"))
        if known is not None and known != fingerprint:
            raise KeyStoreError(
                f"The project secret differs from the one the key {self.path} was made with, so "
                "UIDs and dates would not match earlier outputs. Use the original secret "
                "(--secret-file or SCRUBBER_SECRET), or start a new project or key file."
            )

    # -- pseudonyms ---------------------------------------------------------------------------

    def patient_index(self, patient_key: str) -> int:
        """Return the index of a patient, assigning the next free one on first sight.

        The assignment is committed before this returns, so an output that carries the pseudonym
        can never outlive the record of it.

        Parameters
        ----------
        patient_key : str
            What identifies the patient in the source (normally the original Patient ID).

        Returns
        -------
        int
            The patient's index, starting at 1.
        """
        row = self._db.execute(
            "SELECT idx FROM patients WHERE patient_key = ?", (patient_key,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT OR IGNORE INTO patients (patient_key, idx, created) "
                    "VALUES (?, (SELECT COALESCE(MAX(idx), 0) + 1 FROM patients), ?)",
                    (patient_key, time.time()),
                )
                row = self._db.execute(
                    "SELECT idx FROM patients WHERE patient_key = ?", (patient_key,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise KeyStoreError(
                f"Cannot record a new patient in the key {self.path}: {type(exc).__name__}. "
                "Check the disk and that no other program holds the file locked."
            ) from exc
        return int(row[0])

    def record(self, kind: str, original: str, replacement: str) -> None:
        """Queue a mapping row; it is written by :meth:`flush`.

        Parameters
        ----------
        kind : str
            One of :data:`MAPPING_KINDS`.
        original : str
            The original value.
        replacement : str
            What the output carries instead.
        """
        self._pending.append((kind, original, replacement))

    def flush(self) -> None:
        """Write queued mapping rows in one transaction.

        Raises
        ------
        KeyStoreError
            If the rows cannot be written.
        """
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT OR IGNORE INTO mapping (kind, original, replacement) VALUES (?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise KeyStoreError(
                f"Cannot write to the key {self.path}: {type(exc).__name__}. "
                "Check the disk and that no other program holds the file locked."
            ) from exc

    def export_csv(self, kind: str, out: TextIO) -> int:
        """Write the mapping of one kind as ``id_old,id_new`` CSV.

        Parameters
        ----------
        kind : str
            One of :data:`MAPPING_KINDS`; ``uid`` exports every UID kind.
        out : TextIO
            Where to write.

        Returns
        -------
        int
            The number of rows written.

        Raises
        ------
        KeyStoreError
            If ``kind`` is unknown.
        """
        if kind not in MAPPING_KINDS:
            raise KeyStoreError(
                f"Unknown mapping kind '{kind}'. Choose one of: {', '.join(MAPPING_KINDS)}."
            )
        self.flush()
        kinds = ("study_uid", "series_uid", "uid") if kind == "uid" else (kind,)
        marks = ",".join("?" * len(kinds))
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id_old", "id_new"])
        count = 0
        for original, replacement in self._db.execute(
            f"SELECT original, replacement FROM mapping WHERE kind IN ({marks}) ORDER BY original",
            kinds,
        ):
            writer.writerow([original, replacement])
            count += 1
        return count

    def counts(self) -> dict[str, int]:
        """Return how many rows each mapping kind and the patient table hold.

        Returns
        -------
        dict of str to int
            Counts by kind, plus ``patients``.
        """
        self.flush()
        counts = {kind: 0 for kind in MAPPING_KINDS}
        for kind, count in self._db.execute("SELECT kind, COUNT(*) FROM mapping GROUP BY kind"):
            counts[str(kind)] = int(count)
        counts["patients"] = int(self._db.execute("SELECT COUNT(*) FROM patients").fetchone()[0])
        return counts

    def close(self) -> None:
        """Flush queued rows and close the database."""
        try:
            self.flush()
        finally:
            self._db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
