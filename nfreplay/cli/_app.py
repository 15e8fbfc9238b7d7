"""The Typer application object and shared CLI helpers. Heavy imports stay inside command bodies."""

from __future__ import annotations

import logging
import sys

import typer

from .._version import __version__

app = typer.Typer(
    name="nfreplay",
    help="Replay captured traffic offline through a faithful model of Linux netfilter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STATE = {"quiet": False, "verbose": False}


def _version(value: bool):
    if value:
        typer.echo(f"nfreplay {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details to stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, warnings only."),
):
    STATE["quiet"], STATE["verbose"] = quiet, verbose
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    log = logging.getLogger("nfreplay")
    log.setLevel(level)
    if not log.handlers:
        try:
            from rich.logging import RichHandler

            h = RichHandler(show_path=False, console=_stderr_console())
        except Exception:  # pragma: no cover - rich is a dependency
            h = logging.StreamHandler(sys.stderr)
        log.addHandler(h)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def progress_enabled() -> bool:
    return not STATE["quiet"] and sys.stderr.isatty()


def isna(v) -> bool:
    """pd.isna of one value (False for containers and values pandas cannot test)."""
    try:
        import pandas as pd

        return bool(pd.isna(v)) if not isinstance(v, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False
