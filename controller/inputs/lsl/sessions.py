"""Which neuroreflex sessions publish on the network, read from their LSL outlet names.

A session's outlets are named ``<prefix>-<session id>-<kind>`` (features, markers, feedback,
fmri-qc), so two sessions on one network (two rooms, two jobs on one machine) never share a
stream. A display or tool that follows "the session" picks it here: the one named, or the only
one visible; several visible and none named is an error that lists them, never a guess.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pylsl  # imported where used (visible_sessions), as before


@dataclass(frozen=True)
class VisibleSession:
    session_id: str | None  # None: outlets with the bare prefix (no session id in their names)
    base: str  # the outlets' common name start: <prefix>-<session id>
    host: str
    protocol: str | None

    def __str__(self) -> str:
        what = f" ({self.protocol})" if self.protocol else ""
        return f"{self.session_id or '(no id)'}{what} on {self.host}"


class SessionChoiceError(ValueError):
    """No session, or several, where exactly one was needed; the message lists what is visible."""


def visible_sessions(prefix: str, kind: str = "feedback", wait_s: float = 1.0) -> list[VisibleSession]:
    """Sessions whose ``kind`` outlet is on the network now."""
    import pylsl

    pattern = re.compile(rf"^{re.escape(prefix)}(?:-(?P<sid>[A-Za-z0-9][A-Za-z0-9_.-]*))?-{re.escape(kind)}$")
    found: dict[str, VisibleSession] = {}
    for info in pylsl.resolve_streams(wait_time=wait_s):
        m = pattern.match(info.name())
        if m is None:
            continue
        sid = m.group("sid")
        base = f"{prefix}-{sid}" if sid else prefix
        found[base] = VisibleSession(sid, base, info.hostname(), _protocol_of(info))
    return sorted(found.values(), key=lambda s: s.base)


def _protocol_of(info: pylsl.StreamInfo) -> str | None:
    """The protocol named in a resolved stream's header, when liblsl passed the desc along (it may not)."""
    try:
        value = info.desc().child("neuroreflex").child_value("protocol")
    except Exception:  # a resolver's answer may carry no desc
        return None
    return value or None


def choose_session(prefix: str, session: str | None, kind: str = "feedback", *,
                   wait_s: float | None = None, say: Callable[[str], object] | None = None) -> str:
    """The outlet name start to follow: ``<prefix>-<session>`` when named; else the only visible
    session's, waiting for one to appear (at most ``wait_s``, None = as long as it takes).

    Raises ``SessionChoiceError`` listing the candidates when several are visible, or when none
    appeared within ``wait_s``."""
    if session:
        return f"{prefix}-{session}"
    deadline = None if wait_s is None else time.monotonic() + wait_s
    told = False
    while True:
        seen = visible_sessions(prefix, kind)
        if len(seen) == 1:
            return seen[0].base
        if len(seen) > 1:
            listing = "\n  ".join(str(s) for s in seen)
            raise SessionChoiceError(f"{len(seen)} sessions publish '{prefix}-...-{kind}'; choose one with "
                                     f"--session ID:\n  {listing}")
        if deadline is not None and time.monotonic() >= deadline:
            raise SessionChoiceError(f"no session publishes '{prefix}-...-{kind}' (waited {wait_s:g} s); "
                                     "start the session, or check --prefix")
        if not told and say is not None:
            say(f"waiting for a session to publish '{prefix}-<session id>-{kind}' ...")
            told = True
