"""Score a de-identified copy of a validation set against its answer key.

Every answer of the key (:mod:`.answer_key`) becomes one check, scored the way the MIDI
validation script scores it (:mod:`.score`): the de-identified instance is found through the
linkage export (original SOP Instance UID to new), each element through its path, each pixel
answer through its frame and box. An instance that is not in the output passes its removals and
fails its retentions; the report says whether it was held in the quarantine or is missing.

The report goes to a folder beside the output (``<output>.evaluation/`` unless told otherwise):

``evaluation.json``
    the score overall, by action and by category, instance counts, every failure.
``failures.csv``
    one line per failed check: input file, output file, action, tag, why.
``validation_results.sqlite``
    every check, passed or not (MIDI's ``validation_results`` table, without file values).
``report.html`` and ``thumbs/``
    the same, readable, with before/after thumbnails of every pixel answer.

Neither the report nor the log carries a value read from the de-identified files: a failure names
the element and the key's (synthetic) expected text, never what the output holds.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from scrubber.errors import ConfigError, InputError
from scrubber.validate.answer_key import (
    REMOVALS,
    Answer,
    AnswerKey,
    InstanceAnswers,
)
from scrubber.validate.score import (
    CheckResult,
    box_view,
    text_removed,
    text_retained,
    token_legible,
    values_digest,
    words,
)

__all__ = [
    "Check",
    "Evaluation",
    "EvaluationError",
    "evaluate",
    "read_mapping",
    "write_report",
]

logger = logging.getLogger(__name__)

OcrReader = Callable[[np.ndarray], str]


class EvaluationError(InputError):
    """A de-identified set cannot be scored (missing folder, unreadable mapping)."""

    reason = "evaluation"


@dataclass
class Check:
    """One answer, checked."""

    instance: int
    input_file: str
    output_file: str
    status: str  # released, quarantined or missing
    action: str
    tag: str
    tag_ds: str
    tag_name: str
    category: str
    expected: str
    frame: int | None
    box: tuple[int, int, int, int] | None
    passed: bool
    score: float
    note: str = ""


@dataclass
class Evaluation:
    """The result of scoring a de-identified set."""

    checks: list[Check] = field(default_factory=list)
    instances: Counter[str] = field(default_factory=Counter)
    unexpected_outputs: int = 0
    thumbnails: dict[int, tuple[str, str]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Share of checks passed, in percent (100 when there is nothing to check)."""
        if not self.checks:
            return 100.0
        return 100.0 * sum(c.passed for c in self.checks) / len(self.checks)

    def by(self, attribute: str) -> dict[str, tuple[int, int]]:
        """Return ``{value: (passed, total)}`` grouped by a check attribute."""
        groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for check in self.checks:
            key = str(getattr(check, attribute))
            groups[key][0] += int(check.passed)
            groups[key][1] += 1
        return {k: (v[0], v[1]) for k, v in sorted(groups.items())}

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]


def read_mapping(path: Path) -> dict[str, str]:
    """Read an ``id_old,id_new`` CSV (``scrubber keys export``; MIDI's mapping format).

    Parameters
    ----------
    path : Path
        The CSV file.

    Returns
    -------
    dict of str to str
        Original to new.

    Raises
    ------
    EvaluationError
        If the file is missing or has no ``id_old`` and ``id_new`` columns.
    """
    if not path.is_file():
        raise EvaluationError(
            f"{path}: no such mapping file. Export it with `scrubber keys export -p PROJECT "
            "--kind uid|patient_id --out FILE`."
        )
    with path.open(newline="", encoding="utf-8") as fp:
        reader = csv.DictReader(fp)
        if not reader.fieldnames or not {"id_old", "id_new"} <= set(reader.fieldnames):
            raise EvaluationError(
                f"{path}: needs the columns id_old and id_new (the format `scrubber keys export` "
                "writes)."
            )
        return {
            row["id_old"].strip("<> "): row["id_new"].strip("<> ")
            for row in reader
            if row.get("id_old")
        }


def _read_header(path: Path) -> Dataset | None:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, AttributeError, EOFError):
        return None


def _index(folder: Path, skip_suffixes: tuple[str, ...] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in skip_suffixes or path.name.endswith(".partial"):
            continue
        ds = _read_header(path)
        uid = str(ds.get("SOPInstanceUID", "")) if ds is not None else ""
        if uid:
            found[uid] = path
    return found


def _resolve(ds: Dataset, path: str) -> object | None:
    """Return the value at ``(gggg,eeee)[i]/(gggg,eeee)`` in ``ds``, or None when absent."""
    current: Dataset = ds
    steps = path.split("/")
    for position, raw_step in enumerate(steps):
        index: int | None = None
        step = raw_step
        if "[" in raw_step:
            step, rest = raw_step.split("[", 1)
            index = int(rest.rstrip("]"))
        group, element = step.strip("()").split(",")
        tag = (int(group, 16) << 16) | int(element, 16)
        if tag not in current:
            return None
        value = current[tag].value
        last = position == len(steps) - 1
        if index is not None:
            try:
                item: object = value[index]
            except (IndexError, TypeError, KeyError):
                return None
            if last:
                return item
            if not isinstance(item, Dataset):
                return None
            current = item
        elif last:
            return cast(object, value)
        elif isinstance(value, Dataset):
            current = value
        else:
            return None
    return None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip(" \x00")
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_text(v) for v in value)
    return str(value).strip(" \x00")


def _default_reader(engine_name: str) -> OcrReader:
    from scrubber.detect.ocr import load_engine, read_text

    engine = load_engine(engine_name)

    def read(view: np.ndarray) -> str:
        return " ".join(region.text for region in read_text(engine, view).regions)

    return read


def _frames_of(ds: Dataset) -> list[np.ndarray]:
    from scrubber.dicom_io.pixels import iter_frames

    return list(iter_frames(ds))


def _render(ds: Dataset, frame: np.ndarray) -> np.ndarray:
    from scrubber.dicom_io.pixels import describe_pixels
    from scrubber.render import render_frame

    return render_frame(frame, ds, describe_pixels(ds))


def _crop(view: np.ndarray, box: tuple[int, int, int, int], margin: int) -> np.ndarray:
    x, y, w, h = box
    rows, columns = view.shape[:2]
    return view[
        max(0, y - margin) : min(rows, y + h + margin),
        max(0, x - margin) : min(columns, x + w + margin),
    ]


class _Instance:
    """A de-identified instance, read once, with its frames decoded on first use."""

    def __init__(self, path: Path) -> None:
        from scrubber.dicom_io import read_instance

        self.path = path
        self.ds = read_instance(path)
        self._frames: list[np.ndarray] | None = None
        self._views: dict[int, np.ndarray] = {}

    def frames(self) -> list[np.ndarray]:
        if self._frames is None:
            self._frames = _frames_of(self.ds)
        return self._frames

    def view(self, frame: int) -> np.ndarray:
        if frame not in self._views:
            self._views[frame] = _render(self.ds, self.frames()[frame])
        return self._views[frame]


def _check_header(
    answer: Answer, ds: Dataset, uids: dict[str, str], patids: dict[str, str]
) -> CheckResult:
    value = _resolve(ds, answer.tag_ds)
    present = value is not None
    text = _text(value) if present else ""
    action = answer.action
    if action == "tag_retained":
        return CheckResult(present, float(present))
    if action == "text_notnull":
        ok = present and bool(text)
        return CheckResult(ok, float(ok))
    if action == "text_retained":
        return text_retained(text, answer.action_text)
    if action == "text_removed":
        return text_removed(text, answer.action_text)
    if action in ("date_shifted", "uid_changed"):
        original = answer.value.replace("\\", "")
        ok = not present or not original or original not in text.replace("\\", "")
        return CheckResult(ok, float(ok))
    if action in ("uid_consistent", "patid_consistent"):
        if not present:
            return CheckResult(True, 1.0)  # MIDI: an element that is gone cannot be inconsistent
        mapping = uids if action == "uid_consistent" else patids
        ok = text == mapping.get(answer.value, "\x00no mapping")
        return CheckResult(ok, float(ok))
    raise ValueError(f"not a header action: {action}")


def _check_pixels(
    answer: Answer, instance: _Instance, reader: OcrReader
) -> tuple[CheckResult, str]:
    frames = instance.frames()
    frame = answer.frame or 0
    if frame >= len(frames):
        return CheckResult(False, 0.0), "the frame is not in the output"
    if answer.action == "pixels_retained":
        ok = values_digest(frames[frame]) == answer.action_text
        return CheckResult(ok, float(ok)), "" if ok else "the frame's values changed"
    assert answer.box is not None
    view = instance.view(frame)
    x, y, w, h = answer.box
    if x + w > view.shape[1] or y + h > view.shape[0]:
        return CheckResult(False, 0.0), "the output frame is smaller than the answer box"
    import cv2

    crop = box_view(view, answer.box)
    readings = [
        reader(crop),
        reader(cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)),
    ]
    tokens = words(answer.action_text)
    legible = [t for t in tokens if token_legible(t, readings)]
    hidden = len(tokens) - len(legible)
    score = hidden / len(tokens) if tokens else 1.0
    note = "" if not legible else f"{len(legible)} of {len(tokens)} word(s) still legible"
    return CheckResult(not legible, score), note


def evaluate(
    deidentified: Path,
    key: AnswerKey,
    *,
    uid_map: dict[str, str],
    patid_map: dict[str, str],
    quarantine: Path | None = None,
    reader: OcrReader | None = None,
    ocr_engine: str = "rapidocr",
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Score a de-identified set against its answer key.

    Parameters
    ----------
    deidentified : Path
        The de-identified output folder (any layout: instances are found by their UIDs).
    key : AnswerKey
        The set's answer key.
    uid_map, patid_map : dict of str to str
        The linkage exports: original UID and Patient ID to new.
    quarantine : Path, optional
        Where held instances are (default: ``<deidentified>.quarantine`` when it exists).
    reader : callable, optional
        OCR of a rendered crop to text (default: scrubber's OCR engine ``ocr_engine``).
    ocr_engine : str
        The OCR engine used when ``reader`` is not given.
    progress : callable, optional
        Called with (done, total) after each instance.

    Returns
    -------
    Evaluation

    Raises
    ------
    EvaluationError
        If the output folder does not exist.
    """
    if not deidentified.is_dir():
        raise EvaluationError(
            f"{deidentified}: no such folder. Give the output folder of the de-identification."
        )
    if quarantine is None:
        beside = deidentified.with_name(deidentified.name + ".quarantine")
        quarantine = beside if beside.is_dir() else None
    outputs = _index(deidentified)
    held = _index(quarantine, (".json", ".png")) if quarantine is not None else {}
    needs_ocr = any(a.action == "pixels_hidden" for i in key for a in i.answers)
    if reader is None and needs_ocr:
        reader = _default_reader(ocr_engine)
    evaluation = Evaluation()
    matched: set[Path] = set()
    for number, instance in enumerate(key.instances):
        new_uid = uid_map.get(instance.sop_instance_uid, "")
        path = outputs.get(new_uid) if new_uid else None
        if path is not None:
            matched.add(path)
            evaluation.checks.extend(_released(number, instance, path, uid_map, patid_map, reader))
            evaluation.instances["released"] += 1
        else:
            status = "quarantined" if instance.sop_instance_uid in held else "missing"
            evaluation.instances[status] += 1
            evaluation.checks.extend(_absent(number, instance, status))
        if progress is not None:
            progress(number + 1, len(key.instances))
    evaluation.unexpected_outputs = len(set(outputs.values()) - matched)
    return evaluation


def _check(
    number: int,
    instance: InstanceAnswers,
    answer: Answer,
    output: str,
    status: str,
    result: CheckResult,
    note: str,
) -> Check:
    expected = answer.action_text if answer.action not in ("pixels_retained",) else ""
    return Check(
        instance=number,
        input_file=instance.file_path,
        output_file=output,
        status=status,
        action=answer.action,
        tag=answer.tag,
        tag_ds=answer.tag_ds,
        tag_name=answer.tag_name,
        category=answer.category,
        expected=expected[:120],
        frame=answer.frame,
        box=answer.box,
        passed=result.passed,
        score=result.score,
        note=note,
    )


def _absent(number: int, instance: InstanceAnswers, status: str) -> list[Check]:
    checks = []
    for answer in instance.answers:
        passed = answer.action in REMOVALS
        note = "" if passed else f"the instance was {status}: nothing of it was released"
        checks.append(
            _check(number, instance, answer, "", status, CheckResult(passed, float(passed)), note)
        )
    return checks


def _released(
    number: int,
    instance: InstanceAnswers,
    path: Path,
    uids: dict[str, str],
    patids: dict[str, str],
    reader: OcrReader | None,
) -> list[Check]:
    from scrubber.errors import ScrubberError

    checks = []
    try:
        loaded: _Instance | None = _Instance(path)
    except ScrubberError:
        loaded = None
    for answer in instance.answers:
        note = ""
        if loaded is None:
            result, note = CheckResult(False, 0.0), "the output file cannot be read"
        elif answer.action in ("pixels_hidden", "pixels_retained"):
            try:
                if answer.action == "pixels_hidden" and reader is None:
                    raise ConfigError("no OCR reader")
                result, note = _check_pixels(answer, loaded, reader)  # type: ignore[arg-type]
            except ScrubberError:
                result, note = CheckResult(False, 0.0), "the output's pixels cannot be decoded"
        else:
            result = _check_header(answer, loaded.ds, uids, patids)
            if not result.passed:
                note = _header_note(answer.action)
        checks.append(_check(number, instance, answer, str(path), "released", result, note))
    return checks


def _header_note(action: str) -> str:
    return {
        "tag_retained": "the element is gone",
        "text_notnull": "the element is gone or empty",
        "text_retained": "the text did not survive",
        "text_removed": "identifying words survive",
        "date_shifted": "the original date survives",
        "uid_changed": "the original UID survives",
        "uid_consistent": "the UID is not the one the linkage export maps it to",
        "patid_consistent": "the Patient ID is not the one the linkage export maps it to",
    }.get(action, "")


# -- the report -----------------------------------------------------------------------------------


def _thumbnail(view: np.ndarray, box: tuple[int, int, int, int] | None, side: int = 220) -> bytes:
    import cv2

    if box is not None:
        x, y, w, h = box
        margin = max(12, h)
        view = _crop(view, box, margin).copy()
        ox, oy = min(x, margin), min(y, margin)
        colour = (255, 0, 0) if view.ndim == 3 else 255
        cv2.rectangle(view, (ox, oy), (ox + w - 1, oy + h - 1), colour, 1)
    scale = side / max(view.shape[:2])
    if scale < 1.0:
        view = cv2.resize(view, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    bgr = view if view.ndim == 2 else cv2.cvtColor(view, cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", bgr)
    return png.tobytes() if ok else b""


def write_report(
    evaluation: Evaluation,
    folder: Path,
    *,
    input_dir: Path | None,
) -> Path:
    """Write the report (JSON, CSV, SQLite, HTML with thumbnails) into ``folder``.

    Parameters
    ----------
    evaluation : Evaluation
        What :func:`evaluate` returned.
    folder : Path
        The report folder (created; files in it are replaced).
    input_dir : Path, optional
        The validation set's ``input/`` folder, for the "before" thumbnails.

    Returns
    -------
    Path
        The HTML page.
    """
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "score_percent": round(evaluation.score, 4),
        "checks": len(evaluation.checks),
        "passed": sum(c.passed for c in evaluation.checks),
        "instances": dict(evaluation.instances),
        "unexpected_outputs": evaluation.unexpected_outputs,
        "by_action": {
            k: {"passed": p, "total": t} for k, (p, t) in evaluation.by("action").items()
        },
        "by_category": {
            k: {"passed": p, "total": t} for k, (p, t) in evaluation.by("category").items()
        },
        "failures": [asdict(c) for c in evaluation.failures],
    }
    (folder / "evaluation.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    fields = [
        "input_file",
        "output_file",
        "status",
        "action",
        "tag",
        "tag_name",
        "frame",
        "box",
        "expected",
        "note",
    ]
    with (folder / "failures.csv").open("w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(fields)
        for check in evaluation.failures:
            row = asdict(check)
            writer.writerow([row[f] if row[f] is not None else "" for f in fields])
    _write_sqlite(evaluation, folder / "validation_results.sqlite")
    thumbs = _write_thumbnails(evaluation, folder / "thumbs", input_dir)
    page = folder / "report.html"
    page.write_text(_html(evaluation, summary, thumbs), encoding="utf-8")
    return page


def _write_sqlite(evaluation: Evaluation, path: Path) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TABLE validation_results (id INTEGER PRIMARY KEY, check_passed INTEGER, "
            "check_score REAL, action TEXT, action_text TEXT, tag TEXT, tag_ds TEXT, "
            "tag_name TEXT, category TEXT, status TEXT, input_file TEXT, output_file TEXT, "
            "frame INTEGER, box TEXT, note TEXT)"
        )
        db.executemany(
            "INSERT INTO validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    n,
                    int(c.passed),
                    c.score,
                    f"<{c.action}>",
                    f"<{c.expected}>",
                    c.tag,
                    c.tag_ds,
                    c.tag_name,
                    c.category,
                    c.status,
                    c.input_file,
                    c.output_file,
                    c.frame,
                    json.dumps(list(c.box)) if c.box else None,
                    c.note,
                )
                for n, c in enumerate(evaluation.checks)
            ],
        )
        db.commit()
    finally:
        db.close()


def _write_thumbnails(
    evaluation: Evaluation, folder: Path, input_dir: Path | None
) -> dict[int, tuple[str, str]]:
    """Before/after PNGs of every pixel check; returns {check index: (before, after)} names."""
    from scrubber.errors import ScrubberError

    folder.mkdir(parents=True, exist_ok=True)
    names: dict[int, tuple[str, str]] = {}
    cache: dict[str, _Instance | None] = {}

    def load(path: str) -> _Instance | None:
        if path not in cache:
            try:
                cache[path] = _Instance(Path(path))
            except ScrubberError:
                cache[path] = None
        return cache[path]

    for index, check in enumerate(evaluation.checks):
        if check.action not in ("pixels_hidden", "pixels_retained"):
            continue
        frame = check.frame or 0
        pair = []
        sources = [
            str(input_dir / check.input_file) if input_dir is not None else "",
            check.output_file,
        ]
        for side, source in zip(("before", "after"), sources, strict=True):
            name = ""
            instance = load(source) if source else None
            if instance is not None:
                try:
                    view = instance.view(frame)
                    data = _thumbnail(view, check.box)
                    if data:
                        name = f"{index:06d}-{side}.png"
                        (folder / name).write_bytes(data)
                except (ScrubberError, IndexError):
                    name = ""
            pair.append(name)
        names[index] = (pair[0], pair[1])
        if len(cache) > 64:
            cache.clear()
    return names


def _html(
    evaluation: Evaluation, summary: dict[str, object], thumbs: dict[int, tuple[str, str]]
) -> str:
    e = html.escape
    out = io.StringIO()
    out.write(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>scrubber evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.fail{background:#fdd}"
        ".pass{background:#dfd}img{max-width:220px;border:1px solid #888}"
        ".grid{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ccc;padding:6px}"
        "</style></head><body>"
    )
    out.write(f"<h1>score: {evaluation.score:.2f}%</h1>")
    out.write(
        f"<p>{summary['passed']} of {summary['checks']} checks passed. Instances: "
        + ", ".join(f"{e(k)} {v}" for k, v in sorted(evaluation.instances.items()))
        + f". Outputs not in the key: {evaluation.unexpected_outputs}.</p>"
    )
    for title, groups in (
        ("By action", evaluation.by("action")),
        ("By category", evaluation.by("category")),
    ):
        out.write(
            f"<h2>{title}</h2><table><tr><th></th><th>passed</th><th>checks</th><th>%</th></tr>"
        )
        for name, (passed, total) in groups.items():
            cls = "pass" if passed == total else "fail"
            out.write(
                f"<tr class='{cls}'><td>{e(name)}</td><td>{passed}</td><td>{total}</td>"
                f"<td>{100.0 * passed / total:.2f}</td></tr>"
            )
        out.write("</table>")
    failures = evaluation.failures
    out.write(f"<h2>Failures ({len(failures)})</h2>")
    if failures:
        out.write(
            "<table><tr><th>input</th><th>status</th><th>action</th><th>element</th>"
            "<th>expected</th><th>why</th></tr>"
        )
        for c in failures:
            out.write(
                f"<tr class='fail'><td>{e(c.input_file)}</td><td>{e(c.status)}</td>"
                f"<td>{e(c.action)}</td><td>{e(c.tag)} {e(c.tag_name)}</td><td>{e(c.expected)}</td>"
                f"<td>{e(c.note)}</td></tr>"
            )
        out.write("</table>")
    out.write("<h2>Pixel answers: before and after</h2><div class='grid'>")
    for index, (before, after) in thumbs.items():
        c = evaluation.checks[index]
        cls = "pass" if c.passed else "fail"
        images = "".join(
            f"<img alt='{side}' src='thumbs/{e(name)}'>" if name else f"<span>{side}: none</span>"
            for side, name in (("before", before), ("after", after))
        )
        out.write(
            f"<div class='card {cls}'><div>{e(c.input_file)} frame {c.frame} "
            f"{e(c.action)}: {'passed' if c.passed else 'FAILED'}</div>{images}</div>"
        )
    out.write("</div></body></html>")
    return out.getvalue()
