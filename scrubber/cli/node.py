"""``scrubber node``: a DICOM node that receives, scrubs and forwards (pynetdicom)."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from scrubber.cli.app import ProjectOpt, _configure_logging, _fail, err
from scrubber.errors import ConfigError, ScrubberError


def node(
    forward: Annotated[
        str, typer.Option("--forward", help="Destination as AET@HOST:PORT.", show_default=False)
    ],
    spool: Annotated[
        Path, typer.Option("--spool", help="Spool folder (incoming/, outgoing/).", file_okay=False)
    ],
    quarantine: Annotated[
        Path, typer.Option("--quarantine", help="Where held instances go.", file_okay=False)
    ],
    project: ProjectOpt,
    ae_title: Annotated[str, typer.Option("--ae-title", help="This node's AE title.")] = "SCRUBBER",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 11112,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "0.0.0.0",
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route",
            help="AE=PROJECT: instances called to, or sent from, this AE title go to PROJECT "
            "(repeatable). With routes, callers no route names are refused unless "
            "--allow-unknown.",
        ),
    ] = None,
    allow_unknown: Annotated[
        bool, typer.Option("--allow-unknown", help="Accept any caller into --project.")
    ] = False,
    key_dir: Annotated[
        Path | None,
        typer.Option(
            "--key-dir", help="Folder of per-project keys (<dir>/<PROJECT>/...).", file_okay=False
        ),
    ] = None,
    ocr: Annotated[str, typer.Option("--ocr", help="OCR engine.")] = "rapidocr",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Receive instances (C-STORE, C-ECHO), scrub them, forward clean and scrubbed ones.

    Each received instance is on disk before it is acknowledged; forwarding retries with backoff
    and survives restarts; held instances wait in the quarantine, and a reviewer's release into
    <spool>/outgoing is forwarded too. Without --route, every caller goes to --project.
    """
    try:
        from scrubber.node import Destination, NodeSettings, ScrubNode
    except ImportError:
        raise _fail(ConfigError("The node needs its extra: pip install -e '.[node]'.")) from None
    _configure_logging(verbose)
    try:
        routes = {}
        for entry in route or []:
            ae, sep, name = entry.partition("=")
            if not sep or not ae.strip() or not name.strip():
                raise ConfigError(f"--route must be AE=PROJECT, not {entry!r}.")
            routes[ae.strip()] = name.strip()
        settings = NodeSettings(
            ae_title=ae_title,
            port=port,
            destination=Destination.parse(forward),
            spool=spool.absolute(),
            quarantine=quarantine.absolute(),
            project=project,
            routes=routes,
            allow_unknown=allow_unknown or not routes,
            key_dir=key_dir,
            host=host,
            ocr=ocr,
        )
        service = ScrubNode(settings)
        service.start()
    except (ScrubberError, OSError) as exc:
        if isinstance(exc, OSError):
            exc = ConfigError(f"Cannot listen on port {port} ({exc.strerror}).")
        raise _fail(exc) from exc
    err.print(f"{ae_title} listening on {host}:{port}, forwarding to {forward} (Ctrl-C stops)")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    service.stop()
    err.print(f"stopped: {service.counts}")
