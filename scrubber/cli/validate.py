r"""``scrubber synth`` and ``scrubber evaluate``: build a validation set, score its scrub.

The recipe (README, "Validating a deployment")::

    scrubber synth val --n 200
    scrubber run val/input --out val/deid -p VALID
    scrubber keys export -p VALID --kind uid --out val/uid_map.csv
    scrubber keys export -p VALID --kind patient_id --out val/patid_map.csv
    scrubber evaluate val/deid --answer-key val/answer_key.sqlite \\
        --uid-map val/uid_map.csv --patid-map val/patid_map.csv
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import typer

from scrubber.cli.app import (
    EXIT_PARTIAL,
    BasicOnlyOpt,
    KeyFileOpt,
    ProfileOptionOpt,
    QuietOpt,
    VerboseOpt,
    _configure_logging,
    _fail,
    _progress,
    err,
    out,
)
from scrubber.deid import DEFAULT_OPTIONS
from scrubber.errors import ScrubberError


def synth(
    destination: Annotated[
        Path,
        typer.Argument(
            help="Folder for the set: input/ (the DICOM files), answer_key.sqlite and .json.",
            file_okay=False,
        ),
    ],
    count: Annotated[
        int, typer.Option("--n", min=1, max=100_000, help="Number of instances.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice.")] = 0,
    burn_share: Annotated[
        float,
        typer.Option(
            "--burn-share", min=0.0, max=1.0, help="Share of instances with text burned in."
        ),
    ] = 0.3,
    multiframe_share: Annotated[
        float,
        typer.Option(
            "--multiframe-share", min=0.0, max=1.0, help="Share of multi-frame (cine) instances."
        ),
    ] = 0.1,
    patients: Annotated[
        int | None,
        typer.Option("--patients", min=1, help="Number of fake patients (default: n / 8)."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="A folder of text-free DICOM images to use besides the bundled ones.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    option: ProfileOptionOpt = None,
    basic_only: BasicOnlyOpt = False,
    no_legibility_check: Annotated[
        bool,
        typer.Option(
            "--no-legibility-check",
            help="Do not check burned text with OCR (faster; a hidden box then proves less).",
        ),
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a synthetic validation set with fake patients and its answer key (MIDI format).

    Give the de-identification under test the same profile options (--option, --basic-only) as
    this command: the answer key follows them.
    """
    from scrubber.validate.synth import SynthSettings, synthesize

    _configure_logging(verbose)
    options = set() if basic_only else set(DEFAULT_OPTIONS)
    options |= set(option or [])
    try:
        settings = SynthSettings(
            count=count,
            seed=seed,
            burn_share=burn_share,
            multiframe_share=multiframe_share,
            patients=patients,
            images=images,
            options=frozenset(options),
            check_legible=not no_legibility_check,
        )
        with _progress(quiet) as bar:
            task = bar.add_task("synth", total=count)
            result = synthesize(
                destination,
                settings,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except ScrubberError as exc:
        raise _fail(exc) from exc
    err.print(
        f"{result.instances} instances ({result.burned} with burned-in text) under "
        f"{result.input_dir}; {result.answers} answers in {result.key_sqlite} and "
        f"{result.key_json.name}."
    )


def evaluate(
    deidentified: Annotated[
        Path, typer.Argument(help="The de-identified output folder.", file_okay=False)
    ],
    answer_key: Annotated[
        Path,
        typer.Option("--answer-key", help="answer_key.sqlite (or .json) from `scrubber synth`."),
    ],
    uid_map: Annotated[
        Path | None,
        typer.Option(
            "--uid-map", help="id_old,id_new CSV of UIDs (`scrubber keys export --kind uid`)."
        ),
    ] = None,
    patid_map: Annotated[
        Path | None,
        typer.Option("--patid-map", help="id_old,id_new CSV of Patient IDs (`--kind patient_id`)."),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            "-p",
            help="Read the mappings from this project's key instead of --uid-map/--patid-map.",
        ),
    ] = None,
    key_file: KeyFileOpt = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            help="Where held instances are (default: <output>.quarantine when it exists).",
            file_okay=False,
        ),
    ] = None,
    input_dir: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="The set's input folder, for the 'before' thumbnails (default: the one beside "
            "the answer key).",
            file_okay=False,
        ),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            help="Where the report goes (default: <output>.evaluation beside the output).",
            file_okay=False,
        ),
    ] = None,
    ocr: Annotated[
        str, typer.Option("--ocr", help="OCR engine that reads the answer boxes.")
    ] = "rapidocr",
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score a de-identified copy of a validation set against its answer key.

    Prints the score by action and category and, last, `score: NN.NN%`; writes the report (JSON,
    CSV of failures, SQLite of every check, HTML with before/after thumbnails) beside the output.
    Exits 0 when every check passed, 1 when some failed, 2 on a usage error.
    """
    from rich.table import Table

    from scrubber.validate.answer_key import AnswerKey
    from scrubber.validate.evaluate import evaluate as score_set
    from scrubber.validate.evaluate import write_report

    _configure_logging(verbose)
    try:
        key = AnswerKey.read(answer_key)
        uids, patids = _mappings(uid_map, patid_map, project, key_file)
        folder = report_dir or deidentified.with_name(deidentified.name + ".evaluation")
        source = input_dir or answer_key.parent / key.meta.get("input", "input")
        with _progress(quiet) as bar:
            task = bar.add_task("evaluate", total=len(key))
            evaluation = score_set(
                deidentified,
                key,
                uid_map=uids,
                patid_map=patids,
                quarantine=quarantine,
                ocr_engine=ocr,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        page = write_report(evaluation, folder, input_dir=source if source.is_dir() else None)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    table = Table(title="checks by action")
    for column in ("action", "passed", "checks", "%"):
        table.add_column(column, justify="left" if column == "action" else "right")
    for name, (passed, total) in evaluation.by("action").items():
        table.add_row(name, str(passed), str(total), f"{100.0 * passed / total:.2f}")
    out.print(table)
    categories = evaluation.by("category")
    out.print(
        "by category: "
        + ", ".join(f"{k or '-'} {100.0 * p / t:.2f}%" for k, (p, t) in categories.items())
    )
    out.print(
        "instances: "
        + ", ".join(f"{k} {v}" for k, v in sorted(evaluation.instances.items()))
        + f"; outputs not in the key: {evaluation.unexpected_outputs}"
    )
    failures = evaluation.failures
    for check in failures[:20]:
        out.print(
            f"FAIL {check.input_file} {check.action} {check.tag} {check.tag_name}"
            + (f" frame {check.frame}" if check.frame is not None else "")
            + (f": {check.note}" if check.note else ""),
            highlight=False,
        )
    if len(failures) > 20:
        out.print(f"... and {len(failures) - 20} more in {folder / 'failures.csv'}")
    out.print(f"report: {page}")
    out.print(f"score: {evaluation.score:.2f}%", highlight=False)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)


def _mappings(
    uid_map: Path | None, patid_map: Path | None, project: str | None, key_file: Path | None
) -> tuple[dict[str, str], dict[str, str]]:
    from scrubber.deid import KeyStore, default_key_path
    from scrubber.errors import ConfigError
    from scrubber.validate.evaluate import read_mapping

    if project is None:
        if uid_map is None or patid_map is None:
            raise ConfigError(
                "Give both --uid-map and --patid-map (from `scrubber keys export`), or "
                "--project to read them from the project's key."
            )
        return read_mapping(uid_map), read_mapping(patid_map)
    path = key_file or default_key_path(project)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no key for project {project}. Run the de-identification first, or give "
            "--uid-map and --patid-map."
        )
    maps = []
    with KeyStore(path, project) as store:
        for kind in ("uid", "patient_id"):
            buffer = io.StringIO()
            store.export_csv(kind, buffer)
            buffer.seek(0)
            maps.append({row["id_old"]: row["id_new"] for row in csv.DictReader(buffer)})
    if uid_map is not None:
        maps[0] = read_mapping(uid_map)
    if patid_map is not None:
        maps[1] = read_mapping(patid_map)
    return maps[0], maps[1]
