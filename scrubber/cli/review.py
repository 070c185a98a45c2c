"""``scrubber review``: work the quarantine queue from the command line.

The same actions as the server's review page: list held instances, show one (its note, a PNG of
a frame with the proposed boxes), release it with the proposed or edited boxes, or reject it.
Every decision is recorded in the queue's audit table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scrubber.cli.app import (
    BasicOnlyOpt,
    DateShiftDaysOpt,
    DateShiftOpt,
    KeepPrivateOpt,
    KeyFileOpt,
    ProfileOptionOpt,
    ProjectOpt,
    SecretFileOpt,
    StrictOpt,
    _deid_config,
    _fail,
    err,
    out,
)
from scrubber.deid import DateShiftScope, Deidentifier, KeyStore, default_key_path, resolve_secret
from scrubber.errors import ScrubberError
from scrubber.review import ReviewQueue

review_app = typer.Typer(help="Work the quarantine review queue.", no_args_is_help=True)

QuarantineArg = Annotated[
    Path,
    typer.Argument(help="The quarantine folder (<out>.quarantine by default).", file_okay=False),
]
ItemArg = Annotated[str, typer.Argument(help="The item's id (from `scrubber review list`).")]
ReviewerOpt = Annotated[
    str, typer.Option("--reviewer", help="Who decides (recorded in the audit table).")
]
LedgerOpt = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        help="The batch run's ledger to record the decision in (default: <out>.ledger.sqlite "
        "when it exists).",
        dir_okay=False,
    ),
]


def _queue(quarantine: Path) -> ReviewQueue:
    try:
        return ReviewQueue(quarantine)
    except ScrubberError as exc:
        raise _fail(exc) from exc


@review_app.command("list")
def review_list(
    quarantine: QuarantineArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Only this reason.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List held instances by reason, oldest first (ids, reasons, scores; no paths)."""
    queue = _queue(quarantine)
    items = queue.items(reason)
    if as_json:
        for item in items:
            out.print(json.dumps(item.summary()), highlight=False, soft_wrap=True)
        return
    table = Table(title=f"{len(items)} held", show_header=True, header_style="bold")
    for column in ("id", "reason", "held at", "frames", "max score", "boxes"):
        table.add_column(column)
    for item in items:
        row = item.summary()
        table.add_row(
            row["id"],
            row["reason"],
            row["held_at"],
            str(row["frames"]),
            "" if row["max_score"] is None else f"{row['max_score']:.3f}",
            str(row["proposed_boxes"]),
        )
    out.print(table)


@review_app.command("show")
def review_show(
    quarantine: QuarantineArg,
    item_id: ItemArg,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Write the frame with the proposed boxes here.", dir_okay=False),
    ] = None,
    frame: Annotated[int, typer.Option("--frame", min=0, help="Frame to render.")] = 0,
) -> None:
    """Show why an instance was held; optionally write a PNG of a frame with its boxes."""
    queue = _queue(quarantine)
    try:
        item = queue.get(item_id)
        out.print_json(json.dumps({**item.summary(), "boxes": item.boxes, "input": item.input}))
        if png is not None:
            png.write_bytes(queue.preview(item_id, frame))
            err.print(f"wrote {png}")
    except ScrubberError as exc:
        raise _fail(exc) from exc


def _parse_box(text: str) -> tuple[int, int, int, int, int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give x,y,width,height[,frame]") from None
    if len(values) == 4:
        values.append(-1)
    if len(values) != 5:
        raise typer.BadParameter(f"{text!r}: give x,y,width,height[,frame]")
    x, y, w, h, f = values
    return (f, x, y, w, h)


@review_app.command("release")
def review_release(
    quarantine: QuarantineArg,
    item_id: ItemArg,
    out_dir: Annotated[
        Path, typer.Option("--out", "-O", help="The run's output folder.", file_okay=False)
    ],
    project: ProjectOpt,
    reviewer: ReviewerOpt,
    box: Annotated[
        list[str] | None,
        typer.Option(
            "--box",
            help="A box to black out, x,y,width,height[,frame] (repeatable); replaces the "
            "proposed boxes. Frame -1 or none: every frame.",
        ),
    ] = None,
    no_boxes: Annotated[
        bool, typer.Option("--no-boxes", help="Release without blacking anything out.")
    ] = False,
    accept_residual: Annotated[
        bool,
        typer.Option(
            "--accept-residual",
            help="Release even if OCR still reads text outside the boxes (you judged it safe).",
        ),
    ] = False,
    layout: Annotated[str, typer.Option("--layout", help="mirror or uids.")] = "mirror",
    ledger: LedgerOpt = None,
    ocr: Annotated[str, typer.Option("--ocr", help="OCR engine for the check.")] = "rapidocr",
    secret_file: SecretFileOpt = None,
    key_file: KeyFileOpt = None,
    option: ProfileOptionOpt = None,
    basic_only: BasicOnlyOpt = False,
    strict: StrictOpt = False,
    keep_private: KeepPrivateOpt = None,
    date_shift: DateShiftOpt = DateShiftScope.PROJECT,
    date_shift_days: DateShiftDaysOpt = None,
) -> None:
    """Release a held instance: black out the boxes, check by OCR, de-identify, write to OUT."""
    from scrubber.detect.ocr import load_engine
    from scrubber.pipeline import ResidualTextError

    queue = _queue(quarantine)
    boxes = [] if no_boxes else ([_parse_box(b) for b in box] if box else None)
    key_path = key_file or default_key_path(project)
    ledger = ledger or out_dir.with_name(out_dir.name + ".ledger.sqlite")
    try:
        if layout not in ("mirror", "uids"):
            raise typer.BadParameter("--layout must be mirror or uids")
        config = _deid_config(
            project, option, basic_only, strict, keep_private, date_shift, date_shift_days
        )
        engine = load_engine(ocr)
        with KeyStore(key_path, project) as store:
            secret, _ = resolve_secret(store, secret_file)
            target, result = queue.release(
                item_id,
                out_dir,
                engine=engine,
                deidentifier=Deidentifier(config, secret, store),
                reviewer=reviewer,
                boxes=boxes,
                accept_residual=accept_residual,
                ledger=ledger,
                layout="uids" if layout == "uids" else "mirror",
            )
    except ResidualTextError as exc:
        err.print(f"[bold red]not released:[/] {exc}", highlight=False)
        for frame, x, y, w, h in exc.regions:
            err.print(f"  residual text at {x},{y},{w},{h} on frame {frame}", highlight=False)
        raise typer.Exit(1) from None
    except ScrubberError as exc:
        raise _fail(exc) from exc
    err.print(f"released ({result.outcome.value}, {len(result.boxes)} box(es)): {target}")


@review_app.command("reject")
def review_reject(
    quarantine: QuarantineArg,
    item_id: ItemArg,
    reviewer: ReviewerOpt,
    ledger: LedgerOpt = None,
) -> None:
    """Reject a held instance: it leaves the queue and is never released (recorded)."""
    queue = _queue(quarantine)
    try:
        item = queue.reject(item_id, reviewer=reviewer, ledger=ledger)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    err.print(f"rejected {item.id} ({item.reason})")


@review_app.command("audit")
def review_audit(quarantine: QuarantineArg) -> None:
    """Print every recorded decision (who, when, what; no PHI)."""
    queue = _queue(quarantine)
    for row in queue.audit():
        out.print(json.dumps(row), highlight=False, soft_wrap=True)
