"""``scrubber serve``: run the scrub server (HTTP API, review page, metrics) with Uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

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
    _configure_logging,
    _deid_config,
    _fail,
    err,
)
from scrubber.deid import DateShiftScope, KeyStore, default_key_path, resolve_secret
from scrubber.errors import ConfigError, ScrubberError


def serve(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            "-O",
            help="Output folder for batch jobs and reviewed releases.",
            file_okay=False,
        ),
    ],
    project: ProjectOpt,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine", help="The review queue (default: <out>.quarantine).", file_okay=False
        ),
    ] = None,
    root: Annotated[
        list[Path] | None,
        typer.Option("--root", help="Folder batch jobs may read (repeatable).", file_okay=False),
    ] = None,
    tokens: Annotated[
        Path | None,
        typer.Option(
            "--tokens",
            help="File of role:token lines (else $SCRUBBER_API_TOKENS).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    max_upload_mb: Annotated[
        int, typer.Option("--max-upload-mb", min=1, help="Largest upload, in MiB.")
    ] = 512,
    queue_size: Annotated[
        int, typer.Option("--queue-size", min=1, help="Uploads in work at once; beyond: 429.")
    ] = 16,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Uploads scrubbed in parallel.")
    ] = 2,
    ocr: Annotated[str, typer.Option("--ocr", help="OCR engine.")] = "rapidocr",
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", help="Classifier folder.", file_okay=False)
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    secret_file: SecretFileOpt = None,
    key_file: KeyFileOpt = None,
    option: ProfileOptionOpt = None,
    basic_only: BasicOnlyOpt = False,
    strict: StrictOpt = False,
    keep_private: KeepPrivateOpt = None,
    date_shift: DateShiftOpt = DateShiftScope.PROJECT,
    date_shift_days: DateShiftDaysOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the scrub server: POST /v1/scrub, batch jobs, the review page at /review, /metrics.

    Listens on loopback unless --host says otherwise. Every call needs a bearer token of the
    submitter or reviewer role (--tokens FILE or $SCRUBBER_API_TOKENS=submitter:T1,reviewer:T2).
    """
    try:
        import uvicorn

        from scrubber.detect.classifier import check_device
        from scrubber.server import ServerSettings, TokenBook, create_app
    except ImportError:
        raise _fail(
            ConfigError("The server needs its extra: pip install -e '.[server]'.")
        ) from None
    _configure_logging(verbose)
    key_path = key_file or default_key_path(project)
    out_dir = out_dir.absolute()
    try:
        check_device(device)  # refused now, not after the server started and reported ready
        book = TokenBook.load(tokens)
        config = _deid_config(
            project, option, basic_only, strict, keep_private, date_shift, date_shift_days
        )
        with KeyStore(key_path, project) as store:
            secret, _ = resolve_secret(store, secret_file)
        held = (quarantine or out_dir.with_name(out_dir.name + ".quarantine")).absolute()
        settings = ServerSettings(
            out=out_dir,
            quarantine=held,
            spool=out_dir.with_name(out_dir.name + ".spool"),
            deid=config,
            secret=secret,
            key_path=key_path,
            tokens=book,
            roots=tuple(r.absolute() for r in root or []),
            max_upload=max_upload_mb * 1024 * 1024,
            queue_size=queue_size,
            workers=workers,
            ocr=ocr,
            model_dir=model_dir,
            device="cuda" if device == "cuda" else "cpu" if device == "cpu" else "auto",
        )
        app = create_app(settings)
    except ScrubberError as exc:
        raise _fail(exc) from exc
    if host not in ("127.0.0.1", "::1", "localhost"):
        err.print(f"[yellow]listening on {host}: put TLS in front of it (a reverse proxy).[/]")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    uvicorn.run(app, host=host, port=port, log_level="info" if verbose else "warning")
