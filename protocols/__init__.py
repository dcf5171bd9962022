"""The protocol library: YAML files, one per paradigm (shipped as package data)."""

from pathlib import Path

PROTOCOL_DIR = Path(__file__).resolve().parent


def find(name: str) -> Path:
    """A protocol by file name or stem, e.g. ``tbr_adhd``."""
    for candidate in (PROTOCOL_DIR / name, PROTOCOL_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no protocol {name!r} in {PROTOCOL_DIR}")
