"""`nfreplay verify`: not built yet (see the open issues)."""

from __future__ import annotations

from ..errors import NfreplayError
from ._app import app


@app.command("verify", hidden=True)
def verify_command():
    """Not built yet."""
    raise NfreplayError("'verify' is not available in this build yet")
