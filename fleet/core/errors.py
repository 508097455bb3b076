"""Domain errors shared by every layer; the CLI maps ``InvalidInput`` to exit code 2."""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error fleet raises on purpose."""


class InvalidInput(FleetError):
    """The caller asked for something malformed or impossible (exit code 2)."""


class NotFound(InvalidInput):
    """An unknown host, VM or job was named."""


class Conflict(FleetError):
    """A concurrent actor holds what we wanted (claim lost, VM already moving)."""


class InvalidTransition(FleetError):
    """A state machine was asked for a transition it does not allow."""
