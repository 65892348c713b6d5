"""Typed errors a person can act on. The API maps each kind to an HTTP status."""

import errno
import os


class RefineryError(Exception):
    """Base class: the message is shown to the person as is."""

    def __init__(self, message: str, *, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInput(RefineryError):
    """The request itself is wrong (empty, out of range, malformed)."""


class NotFound(RefineryError):
    """The request names something that does not exist."""


class Conflict(RefineryError):
    """The request clashes with the current state (already running, immutable ...)."""


class Busy(RefineryError):
    """A limit is reached (queue full); retrying later may work."""


class ModelUnavailable(RefineryError):
    """A model could not be found or loaded."""


class Unauthorized(RefineryError):
    """Login is on and the request has no valid credentials."""


class Forbidden(RefineryError):
    """The logged-in user may not do this (e.g. act in another user's name)."""


class DiskFull(RefineryError):
    """A write failed because the disk holding the data dir is full; nothing was half-saved."""


def disk_full(error: BaseException) -> DiskFull | None:
    """The DiskFull an error means (an OSError ENOSPC, or the store reporting one), else None."""
    full = getattr(error, "errno", None) == errno.ENOSPC
    if not full and os.strerror(errno.ENOSPC) not in str(error):  # DuckDB keeps only the text
        return None
    return DiskFull("the disk is full: this was not saved; free some space on the data dir's "
                    "disk and try again (what was saved before is intact)")
