"""The DICOM node: a Storage SCP that scrubs what it receives and forwards it with a Storage SCU.

Three stages, each handing over through a folder of the spool, so that nothing is acknowledged
that is not on disk and a restart picks up where the node stopped:

``incoming/``
    A received instance is written here (hidden temporary, flushed, renamed) *before* the
    C-STORE response is sent; if that fails, the sender gets a failure status (0xA700) and keeps
    its copy. A small JSON beside it records the calling and called AE titles.
``outgoing/``
    A worker scrubs each incoming instance with the project its AE titles select; clean and
    scrubbed results are written here, held ones go to the quarantine (``node/<project>/...``),
    and the incoming file is removed only after that. A reviewer's release
    (``scrubber review release Q ID --out <spool>/outgoing``) lands here too.
``forwarder``
    Sends every file in ``outgoing/`` to the destination with C-STORE and removes it when the
    destination answered success; a failed send is retried with exponential backoff (1 s up to
    ``max_backoff``), and files survive restarts. A crash between the destination's success and the
    removal resends the instance once more; the destination keeps one copy per SOP Instance UID.

Routing like FIONA's: a ``route`` maps an AE title to a project (the called AE title first, then the
calling one); instances from callers matching no route are refused (status 0x0124, not
authorized) unless ``allow_unknown``, when the default project is used. Logs carry AE titles,
counts and reason slugs, never header values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydicom.dataset import Dataset, FileMetaDataset

from scrubber.deid import DeidConfig, Deidentifier, KeyStore, default_key_path, resolve_secret
from scrubber.dicom_io import flush_file, read_instance, stage_instance
from scrubber.errors import ConfigError, ScrubberError, where

__all__ = ["Destination", "NodeSettings", "ScrubNode"]

_log = logging.getLogger(__name__)

#: C-STORE status: out of resources (the instance could not be stored; the sender retries).
_OUT_OF_RESOURCES: Final = 0xA700
_SUCCESS: Final = 0x0000
#: DIMSE status: refused, not authorized (a caller no route names).
_NOT_AUTHORIZED: Final = 0x0124


@dataclass(frozen=True)
class Destination:
    """Where scrubbed instances are sent: ``AET@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Read ``AET@HOST:PORT``.

        Raises
        ------
        ConfigError
            If the text is not of that form.
        """
        aet, at, rest = text.partition("@")
        host, colon, port = rest.rpartition(":")
        if not (
            at and colon and aet and host and port.isascii() and port.isdigit() and len(aet) <= 16
        ):
            raise ConfigError(
                f"--forward must be AET@HOST:PORT (AE title 16 characters at most), not {text!r}."
            )
        return cls(aet, host, int(port))


@dataclass(frozen=True)
class NodeSettings:
    """Configuration of the node.

    Attributes
    ----------
    ae_title : str
        The node's own AE title.
    port : int
        Port to listen on.
    destination : Destination
        Where to forward.
    spool : Path
        The spool folder (``incoming/``, ``outgoing/``).
    quarantine : Path
        Where held instances go (owner-only).
    project : str
        The default project.
    routes : dict of str to str
        AE title to project.
    allow_unknown : bool
        Accept callers no route names (with the default project).
    deid_options : dict
        Keyword arguments for :class:`~scrubber.deid.DeidConfig` besides the project.
    key_dir : Path or None
        Folder for per-project keys (default: each project's usual key path).
    host : str
        Interface to listen on.
    max_backoff : float
        Longest wait between two forwarding attempts, in seconds.
    ocr : str
        OCR engine.
    """

    ae_title: str
    port: int
    destination: Destination
    spool: Path
    quarantine: Path
    project: str
    routes: dict[str, str] = field(default_factory=dict)
    allow_unknown: bool = False
    deid_options: dict[str, Any] = field(default_factory=dict)
    key_dir: Path | None = None
    host: str = "127.0.0.1"
    max_backoff: float = 60.0
    ocr: str = "rapidocr"


class ScrubNode:
    """Receive, scrub and forward DICOM instances (see the module's description).

    Parameters
    ----------
    settings : NodeSettings
        The node's configuration.
    """

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.incoming = settings.spool / "incoming"
        self.outgoing = settings.spool / "outgoing"
        for folder in (settings.spool, self.incoming, self.outgoing, settings.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        self._stop = threading.Event()
        self._wake_worker = threading.Event()
        self._wake_forwarder = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._projects: dict[str, Deidentifier] = {}
        self._stores: list[KeyStore] = []
        self._classifier: Any = None
        self._engine: Any = None
        self.counts: dict[str, int] = {"received": 0, "forwarded": 0, "held": 0, "failed_sends": 0}

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Load the models, start listening, and start the worker and the forwarder."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        from scrubber.detect import load_classifier
        from scrubber.detect.ocr import load_engine

        self._classifier = load_classifier(threads=1)
        self._engine = load_engine(self.settings.ocr, threads=1)
        ae = AE(ae_title=self.settings.ae_title)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_called_aet = False  # routing decides, per instance (see _project_for)
        ae.maximum_pdu_size = 0
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda _event: _SUCCESS),
        ]
        self._server = ae.start_server(
            (self.settings.host, self.settings.port), block=False, evt_handlers=handlers
        )
        for target, name in (
            (self._work, "scrubber-node-work"),
            (self._forward, "scrubber-node-forward"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wake_worker.set()
        self._wake_forwarder.set()
        _log.info(
            "node %s listening on %s:%d",
            self.settings.ae_title,
            self.settings.host,
            self.settings.port,
        )

    def stop(self) -> None:
        """Stop listening and let the worker and the forwarder finish their current file."""
        self._stop.set()
        self._wake_worker.set()
        self._wake_forwarder.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=30)
        stores, self._stores = self._stores, []
        for store in stores:
            store.close()

    def wake(self) -> None:
        """Look at the spool now (after a reviewer released an instance into ``outgoing/``)."""
        self._wake_worker.set()
        self._wake_forwarder.set()

    # -- receiving ---------------------------------------------------------------------------

    def _project_for(self, called: str, calling: str) -> str | None:
        routes = self.settings.routes
        if called in routes:
            return routes[called]
        if calling in routes:
            return routes[calling]
        return self.settings.project if self.settings.allow_unknown else None

    def _on_store(self, event: Any) -> int:
        """C-STORE: write the instance to the spool before answering."""
        calling = str(event.assoc.requestor.ae_title).strip()
        called = str(event.assoc.acceptor.ae_title).strip()
        project = self._project_for(called, calling)
        if project is None:
            _log.warning("refused an instance from %s to %s: no route", calling, called)
            return _NOT_AUTHORIZED
        try:
            ds: Dataset = event.dataset
            ds.file_meta = FileMetaDataset(event.file_meta)
            name = uuid.uuid4().hex
            tmp = stage_instance(ds, self.incoming / f"{name}.dcm")
            flush_file(tmp)
            _write_json(self.incoming / f"{name}.json", {"project": project, "calling": calling})
            os.replace(tmp, self.incoming / f"{name}.dcm")
        except Exception as exc:  # never acknowledge what is not stored
            _log.error("could not spool a received instance (%s)", type(exc).__name__)
            return _OUT_OF_RESOURCES
        self.counts["received"] += 1
        self._wake_worker.set()
        return _SUCCESS

    # -- scrubbing ---------------------------------------------------------------------------

    def _deidentifier(self, project: str) -> Deidentifier:
        found = self._projects.get(project)
        if found is None:
            key_dir = self.settings.key_dir
            key = key_dir / project / "reid-key.sqlite" if key_dir else default_key_path(project)
            store = KeyStore(key, project)
            secret, _ = resolve_secret(store, None)
            self._stores.append(store)
            config = DeidConfig(project=project, **self.settings.deid_options)
            found = self._projects[project] = Deidentifier(config, secret, store)
        return found

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake_worker.wait(timeout=5)
            self._wake_worker.clear()
            for path in sorted(self.incoming.glob("*.dcm"), key=lambda p: p.stat().st_mtime):
                if self._stop.is_set():
                    return
                try:
                    self._scrub_one(path)
                except Exception as exc:  # one bad file must not stop the node; it stays spooled
                    # where, not what: the message can quote header values (no PHI in logs)
                    _log.error(
                        "scrubbing a spooled instance failed (%s); it stays in incoming/",
                        where(exc),
                    )
            self._wake_forwarder.set()

    def _scrub_one(self, path: Path) -> None:
        from scrubber.pipeline import InstanceResult, Outcome, QuarantineReason, scrub_instance
        from scrubber.runner.quarantine import commit_staged, stage_quarantine

        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        project = str(meta.get("project") or self.settings.project)
        try:
            ds = read_instance(path)
        except ScrubberError as exc:
            result = InstanceResult(Outcome.QUARANTINED, QuarantineReason.UNREADABLE, str(exc))
        else:
            result = scrub_instance(
                ds,
                classifier=self._classifier,
                engine=self._engine,
                deidentifier=self._deidentifier(project),
            )
        if result.released and result.dataset is not None:
            target = self.outgoing / path.name
            tmp = stage_instance(result.dataset, target)
            flush_file(tmp)
            os.replace(tmp, target)
        else:
            relative = Path("node") / project / path.name
            commit_staged(stage_quarantine(path, self.settings.quarantine, relative, result))
            self.counts["held"] += 1
            _log.info("held an instance (%s)", result.reason.value if result.reason else "?")
        path.unlink()
        with contextlib.suppress(FileNotFoundError):
            meta_path.unlink()

    # -- forwarding --------------------------------------------------------------------------

    def _forward(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self._wake_forwarder.wait(timeout=backoff if backoff > 1 else 5)
            self._wake_forwarder.clear()
            pending = sorted(
                (p for p in self.outgoing.rglob("*.dcm") if not p.name.startswith(".")),
                key=lambda p: p.stat().st_mtime,
            )
            failed = False
            for path in pending:
                if self._stop.is_set():
                    return
                if self._send(path):
                    path.unlink()
                    self.counts["forwarded"] += 1
                else:
                    failed = True
                    self.counts["failed_sends"] += 1
                    break
            if failed:
                backoff = min(self.settings.max_backoff, backoff * 2)
                self._stop.wait(backoff)
                self._wake_forwarder.set()
            else:
                backoff = 1.0

    def _send(self, path: Path) -> bool:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE

        try:
            ds = read_instance(path)
        except ScrubberError:
            _log.error("an outgoing file cannot be read; it stays in outgoing/")
            return False
        destination = self.settings.destination
        ae = AE(ae_title=self.settings.ae_title)
        syntax = ds.file_meta.TransferSyntaxUID
        syntaxes = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        ae.add_requested_context(ds.SOPClassUID, syntaxes)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        if not assoc.is_established:
            _log.warning("destination %s not reachable; will retry", destination.ae_title)
            return False
        try:
            status = assoc.send_c_store(ds)
            ok = bool(status) and int(status.Status) in (0x0000, 0xB000, 0xB006, 0xB007)
        finally:
            assoc.release()
        if not ok:
            _log.warning("destination refused an instance; will retry")
        return ok


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        json.dump(data, fp)
        fp.flush()
        os.fsync(fp.fileno())
    os.replace(name, path)
