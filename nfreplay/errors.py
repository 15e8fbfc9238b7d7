"""Errors users see. The CLI turns every NfreplayError into one line on stderr and exit code 1."""

from __future__ import annotations


class NfreplayError(Exception):
    """Base of every user-facing error (bad input, unsupported feature)."""


class CaptureError(NfreplayError, ValueError):
    """A capture file cannot be read. Names the file, and where known the byte offset and record."""

    def __init__(self, path, reason: str, offset: int | None = None, record: int | None = None):
        self.path, self.reason, self.offset, self.record = str(path), reason, offset, record
        where = str(path)
        if record is not None:
            where += f": record {record}"
        if offset is not None:
            where += f" (byte offset {offset})"
        super().__init__(f"{where}: {reason}")


class RulesetSyntaxError(NfreplayError, ValueError):
    """A ruleset line cannot be parsed: file, line, column and the offending token."""

    def __init__(self, source: str, line: int, column: int, token: str, reason: str):
        self.source, self.line, self.column, self.token, self.reason = source, line, column, token, reason
        super().__init__(f"{source}:{line}:{column}: {reason} (at {token!r})")


class UnsupportedRuleError(NfreplayError):
    """A rule uses a match/target/statement nfreplay does not model."""

    def __init__(self, source: str, text: str, feature: str):
        self.source, self.text, self.feature = source, text, feature
        super().__init__(f"{source}: unsupported {feature}: {text}")


class HostModelError(NfreplayError, ValueError):
    """The host file is invalid (unknown sysctl, bad address, unknown interface...)."""


class LabError(NfreplayError):
    """The kernel lab (nfreplay verify) cannot run here: names what is missing."""
