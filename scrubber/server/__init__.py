"""The scrub server: HTTP API, review page and metrics (the ``server`` extra: FastAPI, Uvicorn).

Use :func:`create_app` with :class:`ServerSettings`, or run ``scrubber serve``.
"""

from __future__ import annotations

from scrubber.server.app import create_app
from scrubber.server.settings import TOKENS_ENV, ServerSettings, TokenBook

__all__ = ["TOKENS_ENV", "ServerSettings", "TokenBook", "create_app"]
