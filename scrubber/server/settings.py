"""What the scrub server needs to run: folders, tokens, limits and the de-identification setup."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from scrubber.deid import DeidConfig
from scrubber.errors import ConfigError

__all__ = ["TOKENS_ENV", "Role", "ServerSettings", "TokenBook"]

#: The environment variable holding tokens: ``submitter:TOKEN,reviewer:TOKEN``.
TOKENS_ENV: Final = "SCRUBBER_API_TOKENS"

Role = Literal["submitter", "reviewer"]
_ROLES: Final = ("submitter", "reviewer")
_MIN_TOKEN: Final = 16


class TokenBook:
    """Bearer tokens and their roles (compared in constant time; never logged).

    Parameters
    ----------
    entries : list of tuple of (str, str)
        ``(role, token)`` pairs; a token may be listed under both roles.

    Raises
    ------
    ConfigError
        If a role is unknown or a token is shorter than 16 characters.
    """

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        self._entries: list[tuple[Role, bytes]] = []
        for role, token in entries:
            if role not in _ROLES:
                raise ConfigError(f"Unknown role {role!r} in the API tokens; use {_ROLES}.")
            if len(token) < _MIN_TOKEN:
                raise ConfigError(
                    f"An API token for {role} is shorter than {_MIN_TOKEN} characters; use a long "
                    "random token (python -c 'import secrets; print(secrets.token_urlsafe(32))')."
                )
            self._entries.append((role, token.encode("utf-8")))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str) -> TokenBook:
        """Read ``role:token`` entries separated by commas or new lines (``#`` starts a comment)."""
        entries = []
        for raw in text.replace(",", "\n").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            role, sep, token = line.partition(":")
            if not sep:
                raise ConfigError("API tokens are written role:token (submitter or reviewer).")
            entries.append((role.strip(), token.strip()))
        return cls(entries)

    @classmethod
    def load(cls, path: Path | None) -> TokenBook:
        """Read tokens from ``path``, else from ``$SCRUBBER_API_TOKENS``.

        Raises
        ------
        ConfigError
            If neither gives a token (the server never runs open).
        """
        text = path.read_text(encoding="utf-8") if path else os.environ.get(TOKENS_ENV, "")
        book = cls.parse(text)
        if not book._entries:
            raise ConfigError(
                f"No API tokens: give --tokens FILE or set {TOKENS_ENV}="
                "submitter:TOKEN,reviewer:TOKEN. The server does not run without them."
            )
        return book

    def roles(self, token: str) -> set[Role]:
        """Return the roles ``token`` holds (empty for an unknown token)."""
        given = token.encode("utf-8")
        return {role for role, known in self._entries if hmac.compare_digest(given, known)}


@dataclass(frozen=True)
class ServerSettings:
    """Configuration of one server process.

    Attributes
    ----------
    out : Path
        Where released instances of batch jobs and reviews go (``POST /v1/scrub`` answers with
        the instance instead).
    quarantine : Path
        The quarantine the review queue works on.
    spool : Path
        Owner-only scratch folder for uploads being scrubbed.
    roots : tuple of Path
        Server-side folders batch jobs may read from; nothing outside is read.
    deid : DeidConfig
        The project's de-identification settings.
    secret : bytes
        The project secret.
    key_path : Path or None
        The re-identification key.
    tokens : TokenBook
        Who may call.
    max_upload : int
        Largest accepted upload, in bytes.
    queue_size : int
        Uploads accepted for work at once (waiting or running); beyond it 429.
    workers : int
        Uploads scrubbed in parallel.
    ocr : str
        OCR engine.
    model_dir : Path or None
        Classifier folder.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """

    out: Path
    quarantine: Path
    spool: Path
    deid: DeidConfig
    secret: bytes = field(repr=False)
    key_path: Path | None
    tokens: TokenBook = field(repr=False)
    roots: tuple[Path, ...] = ()
    max_upload: int = 512 * 1024 * 1024
    queue_size: int = 16
    workers: int = 2
    ocr: str = "rapidocr"
    model_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
