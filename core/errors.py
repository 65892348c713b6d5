"""Typed errors a person can act on. The API maps each kind to an HTTP status."""


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
