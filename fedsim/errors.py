"""One exception hierarchy for fedsim. The CLI turns these into one line and exit code 2."""

from __future__ import annotations


class FedsimError(Exception):
    """Base class for every error fedsim reports to a user as bad input or a failed run."""


class ScenarioError(FedsimError):
    """A scenario file or override is invalid. Carries the file and the dotted field."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.message = message
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(FedsimError):
    """A dataset cannot be loaded (missing files, bad settings)."""


class RuntimeFailure(FedsimError):
    """The run cannot continue (no workers left, corrupt messages, ...)."""
