"""`nfreplay info`: not built yet (see the open issues)."""

from __future__ import annotations

from ..errors import NfreplayError
from ._app import app


@app.command("info", hidden=True)
def info_command():
    """Not built yet."""
    raise NfreplayError("'info' is not available in this build yet")
