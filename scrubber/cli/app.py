"""The ``scrubber`` command.

Exit codes: 0 when every input succeeded, 1 when some inputs failed (the rest were processed),
2 for a usage or configuration error (nothing was processed).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, TextIO, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from scrubber import __version__
from scrubber.cli import prestart
from scrubber.deid import (
    DEFAULT_OPTIONS,
    MAPPING_KINDS,
    SECRET_ENV,
    DateShiftScope,
    DeidConfig,
    Deidentifier,
    KeyStore,
    PrivateTagSpec,
    ProfileOption,
    default_key_path,
    resolve_secret,
)
from scrubber.errors import ConfigError, NotDicomError, ScrubberError
from scrubber.runner import DeidJob, FileOutcome, FileStatus, resolve_destination
from scrubber.runner.batch import OUTCOMES
from scrubber.runner.ledger import LedgerRow

app = typer.Typer(
    name="scrubber",
    help="Find patient-identifying text in DICOM pixels, black it out, and de-identify headers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Work with a project's re-identification key.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_PARTIAL = 1
EXIT_USAGE = 2


def _configure_logging(verbose: bool) -> None:
    """Log scrubber's own messages to stderr; silence pydicom, whose messages quote values."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _fail(exc: ScrubberError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(EXIT_USAGE)


ProjectOpt = Annotated[
    str,
    typer.Option(
        "--project",
        "-p",
        help="Project name; pseudonyms are <PROJECT>_001, _002, ... and the key is per project.",
    ),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="Re-identification key (SQLite, mode 0600). "
        "Default: $SCRUBBER_HOME/projects/<PROJECT>/reid-key.sqlite.",
        dir_okay=False,
    ),
]


SecretFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--secret-file",
        help=f"File holding the project secret (else ${SECRET_ENV}, else the key's own).",
        exists=True,
        dir_okay=False,
    ),
]
ProfileOptionOpt = Annotated[
    list[ProfileOption] | None,
    typer.Option(
        "--option",
        "-o",
        help="Profile option to apply (repeatable). Default: "
        + ", ".join(sorted(o.value for o in DEFAULT_OPTIONS))
        + ".",
    ),
]
BasicOnlyOpt = Annotated[
    bool, typer.Option("--basic-only", help="Apply no option but those given with --option.")
]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Also remove standard attributes the profile does not list."),
]
KeepPrivateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--keep-private", help="Safe private attribute to keep, as CREATOR,gggg,xx (repeatable)."
    ),
]
DateShiftOpt = Annotated[
    DateShiftScope,
    typer.Option("--date-shift", help="One date shift for the project, or one per patient."),
]
DateShiftDaysOpt = Annotated[
    int | None,
    typer.Option("--date-shift-days", help="Fixed shift in days instead of a keyed one."),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Write one JSON line per input (no PHI).", dir_okay=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")]


def _deid_config(
    project: str,
    option: list[ProfileOption] | None,
    basic_only: bool,
    strict: bool,
    keep_private: list[str] | None,
    date_shift: DateShiftScope,
    date_shift_days: int | None,
) -> DeidConfig:
    options = set() if basic_only else set(DEFAULT_OPTIONS)
    options |= set(option or [])
    return DeidConfig(
        project=project,
        options=frozenset(options),
        strict=strict,
        keep_private=frozenset(PrivateTagSpec.parse(t) for t in keep_private or []),
        date_shift_scope=date_shift,
        date_shift_days=date_shift_days,
    )


@app.command()
def deid(
    source: Annotated[Path, typer.Argument(help="A DICOM file or a folder tree.", exists=True)],
    destination: Annotated[
        Path, typer.Argument(help="Output file, or folder mirroring the input tree.")
    ],
    project: ProjectOpt,
    secret_file: SecretFileOpt = None,
    key_file: KeyFileOpt = None,
    option: ProfileOptionOpt = None,
    basic_only: BasicOnlyOpt = False,
    strict: StrictOpt = False,
    keep_private: KeepPrivateOpt = None,
    date_shift: DateShiftOpt = DateShiftScope.PROJECT,
    date_shift_days: DateShiftDaysOpt = None,
    report: ReportOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """De-identify DICOM headers (PS3.15 Basic Profile); pixels are copied unchanged."""
    _configure_logging(verbose)
    key_path = key_file or default_key_path(project)
    try:
        config = _deid_config(
            project, option, basic_only, strict, keep_private, date_shift, date_shift_days
        )
        resolve_destination(source, destination, [key_path])  # before touching the key
        store = KeyStore(key_path, project)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    with store:
        try:
            secret, secret_source = resolve_secret(store, secret_file)
            deidentifier = Deidentifier(config, secret, store)
        except ScrubberError as exc:
            raise _fail(exc) from exc
        job = DeidJob(deidentifier, source, destination, protected=[key_path])
        if secret_source == "generated":
            err.print(f"A new project secret was generated and stored in the key {key_path}.")
        plan = job.plan()
        counts: Counter[str] = Counter()
        failures = []
        started = time.perf_counter()
        report_fp: TextIO | None = report.open("w", encoding="utf-8") if report else None
        try:
            with _progress(quiet or len(plan) <= 1) as progress:
                task = progress.add_task("de-identifying", total=len(plan))
                for outcome in job.run(plan):
                    counts[outcome.status.value] += 1
                    if outcome.status is FileStatus.FAILED:
                        failures.append(outcome)
                    if report_fp is not None:
                        report_fp.write(
                            json.dumps(
                                {
                                    "input": str(outcome.input),
                                    "output": str(outcome.output) if outcome.output else None,
                                    "status": outcome.status.value,
                                    "reason": outcome.reason,
                                    "seconds": round(outcome.seconds, 4),
                                }
                            )
                            + "\n"
                        )
                    progress.advance(task)
        finally:
            if report_fp is not None:
                report_fp.close()
        elapsed = time.perf_counter() - started
    _summary(counts, failures, elapsed)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def scrub(
    source: Annotated[Path, typer.Argument(help="A DICOM file or a folder tree.", exists=True)],
    destination: Annotated[
        Path, typer.Argument(help="Output file, or folder mirroring the input tree.")
    ],
    project: ProjectOpt,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            help="Folder for quarantined originals, by reason (default: beside the output, "
            "named <output>.quarantine).",
            file_okay=False,
        ),
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="all: black out every text region; phi: keep text that identifies nobody "
            "(markers, units, parameters).",
        ),
    ] = "all",
    ocr: Annotated[str, typer.Option("--ocr", help="OCR engine.")] = "rapidocr",
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            help="Classifier folder (default: $SCRUBBER_MODEL_DIR, else the shipped models/).",
            file_okay=False,
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Inference threads per model.")
    ] = None,
    secret_file: SecretFileOpt = None,
    key_file: KeyFileOpt = None,
    option: ProfileOptionOpt = None,
    basic_only: BasicOnlyOpt = False,
    strict: StrictOpt = False,
    keep_private: KeepPrivateOpt = None,
    date_shift: DateShiftOpt = DateShiftScope.PROJECT,
    date_shift_days: DateShiftDaysOpt = None,
    report: ReportOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Black out burned-in text, verify it is gone, and de-identify headers.

    Every input ends in exactly one place: the output (clean: pixels untouched; scrubbed: text
    blacked out and verified) or the quarantine (the original, with a .json note of the reason).
    Prints one line per file: status, reason, frames, frames read by OCR, regions blacked out.
    """
    from scrubber.detect import load_classifier
    from scrubber.detect.decide import Policy
    from scrubber.detect.ocr import load_engine
    from scrubber.pipeline import ScrubConfig
    from scrubber.runner.scrub_job import ScrubJob

    _configure_logging(verbose)
    key_path = key_file or default_key_path(project)
    try:
        if policy not in {p.value for p in Policy}:
            raise ConfigError(f"--policy must be all or phi, not {policy!r}")
        config = _deid_config(
            project, option, basic_only, strict, keep_private, date_shift, date_shift_days
        )
        target = resolve_destination(source, destination, [key_path])
        if quarantine is None:
            quarantine = (
                target.with_name(target.name + ".quarantine")
                if source.is_dir()
                else target.parent / "quarantine"
            )
        classifier = load_classifier(model_dir, threads=threads)
        engine = load_engine(ocr, threads=threads)
        store = KeyStore(key_path, project)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    counts: Counter[str] = Counter()
    held = []
    with store:
        try:
            secret, secret_source = resolve_secret(store, secret_file)
            job = ScrubJob(
                source,
                destination,
                quarantine,
                classifier=classifier,
                engine=engine,
                deidentifier=Deidentifier(config, secret, store),
                config=ScrubConfig(policy=Policy(policy)),
                protected=[key_path],
            )
        except ScrubberError as exc:
            raise _fail(exc) from exc
        if secret_source == "generated":
            err.print(f"A new project secret was generated and stored in the key {key_path}.")
        plan = job.plan()
        started = time.perf_counter()
        report_fp: TextIO | None = report.open("w", encoding="utf-8") if report else None
        try:
            with _progress(quiet or len(plan) <= 1) as progress:
                task = progress.add_task("scrubbing", total=len(plan))
                for outcome in job.run(plan):
                    counts[outcome.status] += 1
                    row = outcome.report()
                    if outcome.status == "quarantined":
                        held.append(outcome)
                    if report_fp is not None:
                        report_fp.write(json.dumps(row) + "\n")
                    result = outcome.result
                    detail = (
                        f"frames {result.frames}, ocr {result.ocr_frames}, "
                        f"redacted {result.redacted_regions}"
                        if result is not None
                        else ""
                    )
                    reason = f" ({outcome.reason})" if outcome.reason else ""
                    progress.console.print(
                        f"{outcome.status}{reason} {outcome.input} {detail}",
                        highlight=False,
                        markup=False,
                    )
                    progress.advance(task)
        finally:
            if report_fp is not None:
                report_fp.close()
        elapsed = time.perf_counter() - started
    total = sum(counts.values())
    summary = ", ".join(f"{counts[k]} {k}" for k in ("clean", "scrubbed", "quarantined", "skipped"))
    err.print(f"{total} files in {elapsed:.1f} s: {summary}")
    if held:
        err.print(f"quarantined originals are in {job.quarantine}")
        raise typer.Exit(EXIT_PARTIAL)


@app.command("run")
def run_batch(
    source: Annotated[Path, typer.Argument(help="A DICOM file or a folder tree.", exists=True)],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", "-O", help="Output folder (scrubbed and clean instances).", file_okay=False
        ),
    ],
    project: ProjectOpt,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            help="Folder for quarantined originals, by reason, owner-only (default: "
            "<out>.quarantine beside the output).",
            file_okay=False,
        ),
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option(
            "--ledger",
            help="The run's SQLite ledger (default: <out>.ledger.sqlite beside the output: "
            "input paths can carry names, so it stays out of the research tree).",
            dir_okay=False,
        ),
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="mirror: outputs at the input's relative path; uids: "
            "<Study UID>/<Series UID>/<SOP UID>.dcm of the de-identified UIDs.",
        ),
    ] = "mirror",
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu or cuda (where the classifier runs).")
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-j", min=1, help="Worker processes (default: the usable cores)."
        ),
    ] = None,
    inference: Annotated[
        str,
        typer.Option(
            "--inference",
            help="Where the models run. worker: in every worker process; shared: in one "
            "process per GPU that batches the frames of all workers; auto (default): shared "
            "when the models run on CUDA, else worker.",
        ),
    ] = "auto",
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="all: black out every text region; phi: keep text that identifies nobody.",
        ),
    ] = "all",
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local: worker processes on this machine; ray: actors on a Ray cluster "
            "(input, output and quarantine on a file system every node mounts).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance).",
        ),
    ] = None,
    ocr: Annotated[str, typer.Option("--ocr", help="OCR engine.")] = "rapidocr",
    model_dir: Annotated[
        Path | None,
        typer.Option("--model-dir", help="Classifier folder.", file_okay=False),
    ] = None,
    secret_file: SecretFileOpt = None,
    key_file: KeyFileOpt = None,
    option: ProfileOptionOpt = None,
    basic_only: BasicOnlyOpt = False,
    strict: StrictOpt = False,
    keep_private: KeepPrivateOpt = None,
    date_shift: DateShiftOpt = DateShiftScope.PROJECT,
    date_shift_days: DateShiftDaysOpt = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write one JSON line per input of the whole output (input, outcome, output, "
            "reasons, frames, seconds; no PHI).",
            dir_okay=False,
        ),
    ] = None,
    summary_file: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            help="Write the run's summary as JSON (counts per outcome and reason, frames/s "
            "per stage).",
            dir_okay=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Scrub a whole tree: resumable, on every core, with a ledger, a report and a quarantine.

    Each input ends in exactly one place: the output (clean or scrubbed) or the quarantine
    (the original, a .json note and a .png preview of the proposed boxes), or, if it is not
    DICOM, nowhere (reported as skipped). Rerunning the same command skips inputs already done;
    a run killed at any moment loses nothing and leaves no partial file. Exits 1 when anything
    is in the quarantine.
    """
    from scrubber.detect.classifier import (
        Manifest,
        check_device,
        cuda_available,
        default_model_dir,
    )
    from scrubber.detect.decide import Policy
    from scrubber.runner.batch import BatchRun, RunSettings, versions
    from scrubber.runner.inference import gpu_devices

    _configure_logging(verbose)
    key_path = key_file or default_key_path(project)
    out_dir = out_dir.absolute()
    quarantine = (quarantine or out_dir.with_name(out_dir.name + ".quarantine")).absolute()
    ledger_path = (ledger or out_dir.with_name(out_dir.name + ".ledger.sqlite")).absolute()
    try:
        if policy not in {p.value for p in Policy}:
            raise ConfigError(f"--policy must be all or phi, not {policy!r}")
        if layout not in ("mirror", "uids"):
            raise ConfigError(f"--layout must be mirror or uids, not {layout!r}")
        if engine not in ("local", "ray"):
            raise ConfigError(f"--engine must be local or ray, not {engine!r}")
        if inference not in ("auto", "worker", "shared"):
            raise ConfigError(f"--inference must be auto, worker or shared, not {inference!r}")
        check_device(device)  # in the driver: a worker failing to start says less
        if inference == "auto":  # one model copy per GPU when there is one, else per worker
            on_gpu = (
                engine == "local" and device != "cpu" and cuda_available() and bool(gpu_devices())
            )
            inference = "shared" if on_gpu else "worker"
        config = _deid_config(
            project, option, basic_only, strict, keep_private, date_shift, date_shift_days
        )
        manifest = Manifest.read(model_dir or default_model_dir())
        with KeyStore(key_path, project) as store:
            secret, secret_source = resolve_secret(store, secret_file)
        if secret_source == "generated":
            err.print(f"A new project secret was generated and stored in the key {key_path}.")
        settings = RunSettings(
            source=source.absolute(),
            out=out_dir,
            quarantine=quarantine,
            layout="uids" if layout == "uids" else "mirror",
            deid=config,
            secret=secret,
            key_path=key_path.absolute(),
            policy=policy,
            ocr=ocr,
            model_dir=model_dir,
            device="cuda" if device == "cuda" else "cpu" if device == "cpu" else "auto",
            threads=1,
            inference="shared" if inference == "shared" else "worker",
        )
        count = workers or _usable_cores()
        batch = BatchRun(
            settings,
            ledger_path,
            versions(manifest, settings),
            count,
            engine="ray" if engine == "ray" else "local",
            address=address,
            start_method=prestart.start_method(),
        )
    except ScrubberError as exc:
        raise _fail(exc) from exc
    with batch:
        recovered = batch.recover()
        if recovered:
            err.print(f"{recovered} input(s) left unfinished by an earlier run are redone.")
        tasks, done_before = batch.plan()
        if done_before:
            err.print(f"{done_before} input(s) already done in this output are skipped.")
        counts: Counter[str] = Counter()
        with _progress(quiet) as progress:
            bar = progress.add_task("scrubbing", total=len(tasks))

            def advance(row: LedgerRow) -> None:
                counts[row.outcome] += 1
                counts["frames"] += row.frames
                shown = ", ".join(f"{counts[k]} {k}" for k in OUTCOMES if counts[k])
                progress.update(
                    bar,
                    advance=1,
                    description=f"scrubbing: {counts['frames']} frames ({shown})",
                )

            try:
                summary = batch.run(tasks, advance)
            except ScrubberError as exc:  # a worker died: what is done stays done
                raise _fail(exc) from exc
            finally:
                if report is not None:
                    batch.write_report(report)
        summary.already_done = done_before
        data = summary.as_dict()
        if summary_file is not None:
            summary_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        _run_summary(data, count)
        held = summary.ledger_counts.get("quarantined", 0)
        failed = summary.counts.get("failed", 0)
    if failed:
        err.print(
            f"{failed} input(s) could not be written (see the log: disk full or read-only?); "
            "they are not recorded as done, so rerunning the same command retries them."
        )
    if held:
        err.print(f"{held} input(s) are in the quarantine {quarantine} for review.")
    if held or failed:
        raise typer.Exit(EXIT_PARTIAL)


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _run_summary(data: dict[str, object], workers: int) -> None:
    table = Table(title="scrubber run", show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("this run", justify="right")
    table.add_column("whole output", justify="right")
    counts = cast(dict[str, int], data["counts"])
    whole = cast(dict[str, int], data["ledger_counts"])
    for outcome in OUTCOMES:
        table.add_row(outcome, str(counts.get(outcome, 0)), str(whole.get(outcome, 0)))
    err.print(table)
    reasons = cast(dict[str, int], data["reasons"])
    for reason, number in sorted(reasons.items()):
        err.print(f"  {reason}: {number}")
    err.print(
        f"{data['files']} file(s), {data['frames']} frame(s) in {data['seconds']} s with "
        f"{workers} worker(s): {data['frames_per_second'] or 0} frames/s"
    )


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=disable or not err.is_terminal,
        transient=False,
    )


def _summary(counts: Counter[str], failures: list[FileOutcome], elapsed: float) -> None:
    table = Table(title="scrubber deid", show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for status in ("deidentified", "skipped", "failed"):
        table.add_row(status, str(counts.get(status, 0)))
    total = sum(counts.values())
    rate = total / elapsed if elapsed > 0 else 0.0
    err.print(table)
    err.print(f"{total} files in {elapsed:.1f} s ({rate:.1f} files/s)")
    reasons = Counter(f.reason for f in failures)
    for reason, count in sorted(reasons.items(), key=lambda kv: str(kv[0])):
        err.print(f"  failed, {reason}: {count}")
    for failure in failures:
        message = failure.message or ""
        where = "" if str(failure.input) in message else f"{failure.input}: "
        err.print(f"[red]failed[/] ({failure.reason}) {where}{message}", highlight=False)


@app.command()
def classify(
    source: Annotated[Path, typer.Argument(help="A DICOM file or a folder tree.", exists=True)],
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            help="Folder with text_classifier.json and the ONNX model "
            "(default: $SCRUBBER_MODEL_DIR, else the shipped models/).",
            file_okay=False,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu or cuda (ONNX Runtime provider).")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Inference threads.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON line per file instead of a table.")
    ] = False,
) -> None:
    """Score every frame for burned-in text and say which files OCR would have to read.

    Prints per file: frames, the highest frame score, how many frames score at or above the
    model's `low` threshold, the header flags that force OCR regardless, and the route (`ocr` or
    `clean`). Only paths, numbers and flag names are printed, never header values.
    """
    from scrubber.detect import (
        Device,
        FrameRoute,
        header_flags,
        load_classifier,
        route_frame,
        score_instance,
    )
    from scrubber.dicom_io import read_instance
    from scrubber.runner import iter_files

    _configure_logging(False)
    if device not in ("auto", "cpu", "cuda"):
        raise _fail(ConfigError(f"--device must be auto, cpu or cuda, not {device!r}"))
    try:
        classifier = load_classifier(model_dir, device=cast(Device, device), threads=threads)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    low = classifier.thresholds.low
    table = Table(title="scrubber classify", show_header=True, header_style="bold")
    table.add_column("file", overflow="fold")
    for column in ("frames", "max score", "frames >= low", "header flags", "route"):
        table.add_column(column, justify="right" if column in {"frames", "max score"} else "left")
    failed = 0
    for path in iter_files(source):
        record: dict[str, object] = {"input": str(path)}
        try:
            ds = read_instance(path)  # checks the content first: not DICOM → NotDicomError
            flags = header_flags(ds)
            scores = [float(x) for x in score_instance(classifier, ds)]
        except NotDicomError:
            continue  # other files in a tree (notes, thumbnails) are not inputs
        except ScrubberError as exc:
            failed += 1
            record.update(error=exc.reason)
            if as_json:
                typer.echo(json.dumps(record))
            else:
                table.add_row(str(path), "", "", "", "", f"[red]{exc.reason}[/]")
            continue
        routes = [route_frame(score, flags, classifier.thresholds) for score in scores]
        route = "ocr" if FrameRoute.OCR in routes else "clean"
        above = sum(score >= low for score in scores)
        record.update(
            frames=len(scores),
            max_score=round(max(scores), 4) if scores else None,
            frames_at_or_above_low=above,
            flags=list(flags),
            route=route,
        )
        if as_json:
            typer.echo(json.dumps(record))
        else:
            best = f"{max(scores):.4f}" if scores else ""
            table.add_row(str(path), str(len(scores)), best, str(above), ",".join(flags), route)
    if not as_json:
        out.print(table)
        out.print(
            f"model {classifier.manifest.version} on {classifier.device}; "
            f"low={low:.4f}, high={classifier.thresholds.high:.4f}"
        )
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


@keys_app.command("export")
def keys_export(
    project: ProjectOpt,
    kind: Annotated[
        str,
        typer.Option("--kind", help=f"What to export: {', '.join(MAPPING_KINDS)}."),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--out", help="CSV file to write (default: standard output)."),
    ] = None,
    key_file: KeyFileOpt = None,
) -> None:
    """Export a mapping as `id_old,id_new` CSV (the MIDI validation format). Holds PHI."""
    key_path = key_file or default_key_path(project)
    if not key_path.exists():
        raise _fail(ConfigError(f"There is no key at {key_path}; check --project/--key-file."))
    try:
        with KeyStore(key_path, project) as store:
            if output is None:
                store.export_csv(kind, sys.stdout)
            else:
                with output.open("w", encoding="utf-8", newline="") as fp:
                    output.chmod(0o600)
                    rows = store.export_csv(kind, fp)
                err.print(f"{rows} rows written to {output} (mode 0600).")
    except ScrubberError as exc:
        raise _fail(exc) from exc


@keys_app.command("info")
def keys_info(project: ProjectOpt, key_file: KeyFileOpt = None) -> None:
    """Show where a project's key is and how many mappings it holds (no values)."""
    key_path = key_file or default_key_path(project)
    if not key_path.exists():
        raise _fail(ConfigError(f"There is no key at {key_path}; check --project/--key-file."))
    try:
        with KeyStore(key_path, project) as store:
            counts = store.counts()
    except ScrubberError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"key of project {project}", caption=str(key_path))
    table.add_column("kind")
    table.add_column("entries", justify="right")
    for kind, count in counts.items():
        table.add_row(kind, str(count))
    out.print(table)


@app.command()
def samples(
    destination: Annotated[Path, typer.Argument(help="Folder to write the sample tree into.")],
    patients: Annotated[int, typer.Option(min=1, max=999, help="How many fake patients.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
) -> None:
    """Write synthetic DICOM instances with fake patient data (for demos and trials)."""
    from scrubber.samples import write_samples

    try:
        written = write_samples(destination, patients=patients, seed=seed)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    err.print(f"{len(written)} sample instances written under {destination}.")


@app.command()
def header(
    path: Annotated[Path, typer.Argument(help="A DICOM file.", exists=True, dir_okay=False)],
    keyword_filter: Annotated[
        str | None,
        typer.Option(
            "--keyword-filter",
            "-k",
            help="Comma-separated parts of keywords to show (e.g. Patient,UID).",
        ),
    ] = None,
) -> None:
    """Print a file's header (values included: run it on outputs, or on inputs you may see)."""
    from scrubber.dicom_io import read_instance

    try:
        dataset = read_instance(path, stop_before_pixels=True)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    parts = [p.strip() for p in (keyword_filter or "").split(",") if p.strip()]
    table = Table(show_header=True, header_style="bold", caption=str(path))
    table.add_column("tag")
    table.add_column("keyword")
    table.add_column("value", overflow="fold")
    for elem in dataset.iterall():
        if parts and not any(p.lower() in elem.keyword.lower() for p in parts):
            continue
        value = "<sequence>" if elem.VR == "SQ" else str(elem.value)
        table.add_row(str(elem.tag), elem.keyword or "(private)", value[:120])
    out.print(table)


@app.command()
def version() -> None:
    """Print the scrubber version."""
    out.print(__version__)


def main() -> None:
    """Run the command line."""
    app()


# `scrubber review`, `serve`, `node`, `synth` and `evaluate` live in their own modules, which
# reuse this one's options (hence at the end)
from scrubber.cli.node import node  # noqa: E402
from scrubber.cli.review import review_app  # noqa: E402
from scrubber.cli.serve import serve  # noqa: E402
from scrubber.cli.validate import evaluate, synth  # noqa: E402

app.add_typer(review_app, name="review")
app.command("serve")(serve)
app.command("node")(node)
app.command("synth")(synth)
app.command("evaluate")(evaluate)
