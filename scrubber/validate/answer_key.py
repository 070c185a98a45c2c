"""The answer key of a validation set, in the MIDI format: what each element and image needs.

The NCI/TCIA MIDI validation workshop scores a de-identified copy of a data set against an answer
key: one row per original instance (``answer_data``: its original Study, Series and SOP Instance
UIDs and an ``AnswerData`` JSON object), each listing *actions*, the things a correct
de-identification must do to that instance. Values are written the MIDI way, in angle brackets
(``"<(0010,0010)>"``), so that the key reads in MIDI's own tools.

Actions (:data:`ACTIONS`):

``tag_retained``
    the element must still be present.
``text_notnull``
    the element must be present with a value (a dummy is fine).
``text_retained``
    the element's text must survive.
``text_removed``
    none of the text's words may survive in the element.
``date_shifted``
    the original date may not survive (shifted or removed both pass).
``uid_changed``
    the original UID may not survive.
``uid_consistent``
    the UID must be the one the linkage export maps it to.
``patid_consistent``
    the Patient ID must be the one the linkage export maps it to.
``pixels_hidden``
    OCR of the answer box (``frame``, ``box``) in the output finds none of the text's words.
``pixels_retained``
    the decoded values of frame ``frame`` are unchanged (their digest matches).

scrubber adds two fields MIDI's tools ignore: ``frame`` and ``box`` (``[x, y, width, height]`` in
pixels) on pixel actions. The key is written twice, as SQLite (``answer_data`` plus a ``meta``
table) and as JSON with the same content.

The key holds the synthetic identifying values it checks for: keep it with the synthetic set.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scrubber.errors import InputError

__all__ = [
    "ACTIONS",
    "REMOVALS",
    "RETENTIONS",
    "Answer",
    "AnswerKey",
    "AnswerKeyError",
    "InstanceAnswers",
]

ACTIONS = (
    "tag_retained",
    "text_notnull",
    "text_retained",
    "text_removed",
    "date_shifted",
    "uid_changed",
    "uid_consistent",
    "patid_consistent",
    "pixels_hidden",
    "pixels_retained",
)

REMOVALS = frozenset({"text_removed", "date_shifted", "uid_changed", "pixels_hidden"})
"""Actions that a quarantined or missing instance passes: nothing of it was released."""

RETENTIONS = frozenset(ACTIONS) - REMOVALS
"""Actions that a quarantined or missing instance fails: what should have been kept is not there."""

KEY_VERSION = "1"


class AnswerKeyError(InputError):
    """An answer key cannot be read or is not in the expected format."""

    reason = "answer_key"


def _bracket(text: str) -> str:
    return f"<{text}>"


def _unbracket(text: str) -> str:
    if len(text) >= 2 and text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    return text


@dataclass(frozen=True)
class Answer:
    """One action a correct de-identification must take on one instance.

    Parameters
    ----------
    action : str
        One of :data:`ACTIONS`.
    tag : str
        The element as ``(gggg,eeee)``; the pixel actions use ``(7FE0,0010)``.
    tag_ds : str
        Where the element is: ``(gggg,eeee)`` steps joined by ``/``, with ``[i]`` after a
        sequence's tag for its item (``(0040,0275)[0]/(0032,1060)``).
    tag_name : str
        The element's name (for people reading the report).
    value : str
        The original value (for ``uid_consistent`` and ``patid_consistent`` the key into the
        linkage export).
    action_text : str
        What the action checks: the text that must go or stay, or a pixel digest.
    frame : int or None
        Pixel actions: the frame, from 0.
    box : tuple of int or None
        ``pixels_hidden``: the box ``(x, y, width, height)`` the text was drawn in.
    category : str
        What kind of element or image it is (report grouping): ``patient``, ``date``, ``uid``,
        ``free_text``, ``private``, ``sequence``, ``equipment``, ``structure``, ``pixels``.
    """

    action: str
    tag: str
    tag_ds: str
    tag_name: str
    value: str = ""
    action_text: str = ""
    frame: int | None = None
    box: tuple[int, int, int, int] | None = None
    category: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"Unknown action '{self.action}'; use one of {', '.join(ACTIONS)}.")

    def to_midi(self) -> dict[str, object]:
        """Return the MIDI ``AnswerData`` entry (values in angle brackets, plus frame/box)."""
        entry: dict[str, object] = {
            "action": _bracket(self.action),
            "action_text": _bracket(self.action_text),
            "value": _bracket(self.value),
            "tag": _bracket(self.tag),
            "tag_ds": _bracket(self.tag_ds),
            "tag_name": _bracket(self.tag_name),
            "answer_category_v2": [self.category] if self.category else [],
        }
        if self.frame is not None:
            entry["frame"] = self.frame
        if self.box is not None:
            entry["box"] = list(self.box)
        return entry

    @classmethod
    def from_midi(cls, entry: dict[str, object]) -> Answer:
        """Read one MIDI ``AnswerData`` entry back."""

        def text(key: str) -> str:
            raw = entry.get(key, "")
            return _unbracket(str(raw)) if raw is not None else ""

        categories = entry.get("answer_category_v2") or []
        box = entry.get("box")
        frame = entry.get("frame")
        return cls(
            action=text("action"),
            tag=text("tag"),
            tag_ds=text("tag_ds"),
            tag_name=text("tag_name"),
            value=text("value"),
            action_text=text("action_text"),
            frame=int(str(frame)) if frame is not None else None,
            box=tuple(int(v) for v in box) if isinstance(box, list) else None,  # type: ignore[arg-type]
            category=str(categories[0]) if isinstance(categories, list) and categories else "",
        )


@dataclass
class InstanceAnswers:
    """The answers for one original instance and where its file is in the validation set.

    Parameters
    ----------
    sop_instance_uid, series_instance_uid, study_instance_uid : str
        The instance's original UIDs (the linkage export maps them to the output's).
    patient_id : str
        The original Patient ID.
    modality : str
        The instance's modality.
    file_path : str
        The file, relative to the set's ``input/`` folder.
    frames : int
        Its number of frames.
    burned_in : bool
        Whether text was burned into its pixels.
    answers : list of Answer
        What a correct de-identification must do.
    """

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    modality: str
    file_path: str
    frames: int = 1
    burned_in: bool = False
    answers: list[Answer] = field(default_factory=list)


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE answer_data (
    id INTEGER PRIMARY KEY,
    Class TEXT, Modality TEXT, PatientID TEXT,
    StudyInstanceUID TEXT NOT NULL, SeriesInstanceUID TEXT NOT NULL,
    SOPInstanceUID TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL, file_path TEXT NOT NULL, frames INTEGER NOT NULL,
    burned_in INTEGER NOT NULL, AnswerData TEXT NOT NULL
);
"""


class AnswerKey:
    """A validation set's answer key: instances, their answers and a few facts about the set.

    Parameters
    ----------
    instances : iterable of InstanceAnswers
        The instances.
    meta : dict of str to str, optional
        Facts about the set (generator version, seed, profile options, the input folder).
    """

    def __init__(
        self, instances: Iterable[InstanceAnswers], meta: dict[str, str] | None = None
    ) -> None:
        self.instances = list(instances)
        self.meta = dict(meta or {})
        self.meta.setdefault("key_version", KEY_VERSION)

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[InstanceAnswers]:
        return iter(self.instances)

    def count(self) -> int:
        """Return the number of answers (checks) over every instance."""
        return sum(len(instance.answers) for instance in self.instances)

    def _rows(self) -> Iterator[tuple[object, ...]]:
        for index, instance in enumerate(self.instances):
            data = {str(i): a.to_midi() for i, a in enumerate(instance.answers)}
            yield (
                index,
                "",
                instance.modality,
                instance.patient_id,
                instance.study_instance_uid,
                instance.series_instance_uid,
                instance.sop_instance_uid,
                "<Instance>",
                instance.file_path,
                instance.frames,
                int(instance.burned_in),
                json.dumps(data, ensure_ascii=False),
            )

    def write(self, sqlite_path: Path, json_path: Path | None = None) -> None:
        """Write the key as SQLite (replacing any file there) and, optionally, as JSON.

        Parameters
        ----------
        sqlite_path : Path
            The SQLite file (MIDI's ``answer_data`` table plus ``meta``).
        json_path : Path, optional
            A JSON copy with the same content.
        """
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        partial = sqlite_path.with_name(sqlite_path.name + ".partial")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(partial)
        try:
            db.executescript(_SCHEMA)
            db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(self.meta.items()))
            db.executemany(
                "INSERT INTO answer_data VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._rows()
            )
            db.commit()
        finally:
            db.close()
        partial.replace(sqlite_path)
        if json_path is not None:
            document = {
                "meta": self.meta,
                "answer_data": [
                    {
                        "SOPInstanceUID": i.sop_instance_uid,
                        "SeriesInstanceUID": i.series_instance_uid,
                        "StudyInstanceUID": i.study_instance_uid,
                        "PatientID": i.patient_id,
                        "Modality": i.modality,
                        "scope": "<Instance>",
                        "file_path": i.file_path,
                        "frames": i.frames,
                        "burned_in": i.burned_in,
                        "AnswerData": {str(n): a.to_midi() for n, a in enumerate(i.answers)},
                    }
                    for i in self.instances
                ],
            }
            tmp = json_path.with_name(json_path.name + ".partial")
            tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
            tmp.replace(json_path)

    @classmethod
    def read(cls, path: Path) -> AnswerKey:
        """Read a key from its SQLite file or its JSON copy.

        Parameters
        ----------
        path : Path
            ``answer_key.sqlite`` or ``answer_key.json``.

        Returns
        -------
        AnswerKey

        Raises
        ------
        AnswerKeyError
            If the file is missing or not an answer key.
        """
        if not path.is_file():
            raise AnswerKeyError(
                f"{path}: no such answer key. Give the answer_key.sqlite (or .json) that "
                "`scrubber synth` wrote."
            )
        try:
            if path.suffix.lower() == ".json":
                return cls._read_json(path)
            return cls._read_sqlite(path)
        except AnswerKeyError:
            raise
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            raise AnswerKeyError(
                f"{path}: not a readable answer key ({type(exc).__name__}). Give the "
                "answer_key.sqlite (or .json) that `scrubber synth` wrote."
            ) from None

    @classmethod
    def _read_sqlite(cls, path: Path) -> AnswerKey:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if "answer_data" not in tables:
                raise AnswerKeyError(
                    f"{path}: has no answer_data table, so it is not an answer key. Give the "
                    "answer_key.sqlite that `scrubber synth` wrote."
                )
            meta = dict(db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
            columns = [r[1] for r in db.execute("PRAGMA table_info(answer_data)")]
            rows = [
                dict(zip(columns, r, strict=True))
                for r in db.execute("SELECT * FROM answer_data ORDER BY id")
            ]
        finally:
            db.close()
        return cls((_instance(row) for row in rows), meta)

    @classmethod
    def _read_json(cls, path: Path) -> AnswerKey:
        document = json.loads(path.read_text(encoding="utf-8"))
        rows = document["answer_data"]
        return cls((_instance(row) for row in rows), dict(document.get("meta", {})))


def _instance(row: dict[str, object]) -> InstanceAnswers:
    data = row["AnswerData"]
    entries = json.loads(data) if isinstance(data, str) else data
    if not isinstance(entries, dict):
        raise ValueError("AnswerData is not an object")
    answers = [Answer.from_midi(entries[k]) for k in sorted(entries, key=int)]
    return InstanceAnswers(
        sop_instance_uid=str(row["SOPInstanceUID"]),
        series_instance_uid=str(row.get("SeriesInstanceUID") or ""),
        study_instance_uid=str(row.get("StudyInstanceUID") or ""),
        patient_id=str(row.get("PatientID") or ""),
        modality=str(row.get("Modality") or ""),
        file_path=str(row.get("file_path") or ""),
        frames=int(str(row.get("frames") or 1)),
        burned_in=bool(row.get("burned_in")),
        answers=answers,
    )
