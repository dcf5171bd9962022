"""Checked number types for the simulators' command lines (argparse ``type=``), one copy for every parser."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def channels(text: str) -> int | tuple[str, ...]:
    """A channel count, or comma-separated labels (``C3,C4,Cz,T3``): checked against the template later."""
    if text.strip().isdigit():
        return positive_int(text)
    labels = tuple(label.strip() for label in text.split(","))
    if not all(labels):
        raise argparse.ArgumentTypeError(f"expected a count or comma-separated labels, got {text!r}")
    return labels


def seizure(text: str) -> tuple[float, float]:
    """AT[:DURATION] in seconds (duration 60 s when omitted)."""
    at, sep, duration = text.partition(":")
    try:
        onset = non_negative_float(at)
        length = positive_float(duration) if sep else 60.0
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(f"expected AT[:DURATION] in seconds, got {text!r} ({exc})") from None
    return onset, length


def hz_pair(text: str) -> tuple[float, float]:
    """START:END frequencies in Hz."""
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError("no ':'")
        return positive_float(start), positive_float(end)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(f"expected START:END in Hz, got {text!r} ({exc})") from None
