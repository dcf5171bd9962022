"""Why a session could not start or had to stop (the CLI's exit codes depend on which)."""

from __future__ import annotations


class SessionError(RuntimeError):
    """The session could not start or had to stop; the message says why."""


class SessionInputError(SessionError):
    """The command line asked for something the protocol does not have (exit 2, like a protocol error)."""
