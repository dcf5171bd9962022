"""The protocol as it ran: the session folder's byte-exact copy, compiled again.

Why: the seizure and phase metrics need what the journal does not carry (which feature a rule
watches, its refractory time, a phase feature's band, target and Laplacian). The copy is the
protocol that ran (its sha256 is in the manifest), so reading it keeps the report derived from
the session folder alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.lang.compiled import Protocol
from controller.protocol import load_protocol


@dataclass(frozen=True)
class ProtocolEntry:
    """The manifest's ``protocol`` entry (controller/recording/session.py): the protocol's name, the file
    name of its copy in the session folder and the copy's sha256; None for what the manifest lacks."""

    name: str | None = None
    copy: str | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> ProtocolEntry:
        entry = manifest.get("protocol")
        if not isinstance(entry, dict):
            return cls()
        texts = {k: v for k in ("name", "copy", "sha256") if isinstance(v := entry.get(k), str) and v}
        return cls(**texts)


def protocol_copy_path(session_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """Where the session's protocol copy is (None if there is none)."""
    name = ProtocolEntry.of(manifest).copy
    if name is not None and (session_dir / name).is_file():
        return session_dir / name
    for candidate in sorted(session_dir.glob("protocol.*")):
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            return candidate
    return None


def load_session_protocol(session_dir: Path, manifest: dict[str, Any]) -> tuple[Protocol | None, str | None]:
    """(protocol, None), or (None, why it could not be read)."""
    path = protocol_copy_path(session_dir, manifest)
    if path is None:
        return None, f"{session_dir} holds no protocol copy (protocol.yaml)"
    try:
        return load_protocol(path), None
    except Exception as exc:  # noqa: BLE001 - ProtocolError, OSError ...: the report goes on without it
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{path.name} could not be loaded: {first_line}"
