"""Where a project's secret comes from.

In order: a secret file named by the user, the ``SCRUBBER_SECRET`` environment variable, the secret
scrubber generated earlier and stored in the project's key, or a new random one (stored there).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from scrubber.deid.keystore import KeyStore
from scrubber.errors import ConfigError

__all__ = ["SECRET_ENV", "resolve_secret"]

SECRET_ENV = "SCRUBBER_SECRET"
MIN_SECRET_BYTES = 16


def _read_secret_file(path: Path) -> bytes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the secret file {path} ({exc.strerror or type(exc).__name__}); "
            "check the path and its permissions."
        ) from exc
    if mode & 0o077:
        raise ConfigError(
            f"The secret file {path} can be read by other users (mode {mode:04o}); "
            f"restrict it with `chmod 600 {path}`."
        )
    return data


def resolve_secret(store: KeyStore, secret_file: Path | None = None) -> tuple[bytes, str]:
    """Find the project secret and bind it to the project's key.

    Parameters
    ----------
    store : KeyStore
        The project's key; a generated secret is stored there, any other is checked against the
        fingerprint recorded there.
    secret_file : Path or None, optional
        A file holding the secret (the whole file, surrounding whitespace stripped).

    Returns
    -------
    tuple of (bytes, str)
        The secret and where it came from (``file``, ``environment``, ``key``, ``generated``).

    Raises
    ------
    ConfigError
        If the secret is unreadable or shorter than 16 bytes.
    KeyStoreError
        If the secret differs from the one the key was made with.
    """
    if secret_file is not None:
        secret, source = _read_secret_file(Path(secret_file)), "file"
    elif os.environ.get(SECRET_ENV):
        secret, source = os.environ[SECRET_ENV].strip().encode("utf-8"), "environment"
    else:
        stored = store.stored_secret()
        if stored is not None:
            return stored, "key"
        secret, source = secrets.token_hex(32).encode("ascii"), "generated"
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"The project secret from the {source} is shorter than {MIN_SECRET_BYTES} bytes; "
            "use a long random value, e.g. `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`."
        )
    store.bind_secret(secret, store=source == "generated")
    return secret, source
