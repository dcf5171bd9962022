"""Checks that need the real stream: run (and ``validate --stream``) call these once a
protocol's input is resolved, before the session starts (rate, channel labels, types and
units are unknown at load time). Each problem carries the place in the protocol it is
about, so it is reported as FILE:LINE:COL like a load-time error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.dsp.labels import resolve_channels
from controller.features import registry as feature_registry
from controller.lang.compiled import AverageOfType, Protocol
from controller.lang.errors import Issue, ProtocolError, read_utf8
from controller.lang.source import Loc, Source
from controller.lang.units import DURATION, FREQUENCY, format_quantity
from controller.protocol.signal_units import InputUnits, input_units

RATE_TOLERANCE = 0.01  # relative difference allowed between the stated and the actual rate


def _hz(v: float) -> str:
    return format_quantity(v, FREQUENCY)


@dataclass(frozen=True)
class StreamFacts:
    """What a resolved stream says about itself (from its full description)."""

    name: str
    rate: float
    labels: tuple[str, ...]
    types: tuple[str, ...] | None = ()  # per channel; () when the stream gives none, None: not known here
    units: tuple[str, ...] = ()  # per channel, as written ('' where none)
    speed: float = 1.0  # signal seconds per LSL second (a recording replayed at x4: 4)
    # fNIRS (desc/channels/channel/{measure,wavelength} and desc/montage/optodes): per channel, as written
    measures: tuple[str, ...] = ()
    wavelengths: tuple[str, ...] = ()
    optodes: tuple[tuple[str, float, float, float], ...] = ()  # (label, x, y, z in metres)
    # MEG (desc/projectors/projector): (name, active, channel labels, vector)
    projectors: tuple[tuple[str, bool, tuple[str, ...], tuple[float, ...]], ...] = ()


@dataclass(frozen=True)
class StreamProblem:
    loc: Loc  # where in the protocol file the problem points
    message: str


@dataclass
class StreamCheck:
    """The outcome for one input: its problems, or the units to convert with."""

    problems: list[StreamProblem] = field(default_factory=list)
    units: InputUnits | None = None

    @property
    def messages(self) -> list[str]:
        return [p.message for p in self.problems]


def check_against_stream(protocol: Protocol, input_name: str, fs: float, labels: Sequence[str]) -> list[str]:
    """Problems with using a stream of rate ``fs`` (Hz) and channel ``labels`` for input
    ``input_name`` (units and types not considered); an empty list means it can run on it."""
    facts = StreamFacts("", fs, tuple(labels), types=None)
    return check_stream(protocol, input_name, facts, units=False).messages


def check_stream(protocol: Protocol, input_name: str, stream: StreamFacts, *, units: bool = True) -> StreamCheck:
    """Everything that stops ``stream`` from serving input ``input_name``; with ``units`` also the
    channel units (a used channel without one needs ``unit:`` in the protocol)."""
    out = StreamCheck()
    spec = protocol.inputs.get(input_name)
    if spec is None:
        out.problems.append(StreamProblem(("inputs",), f"input {input_name!r} is not in protocol "
                                          f"{protocol.name!r}; inputs: {', '.join(protocol.inputs)}"))
        return out
    base: Loc = ("inputs", input_name)
    pre = f"input {input_name!r}"
    problem = out.problems.append
    fs, labels = stream.rate, list(stream.labels)
    if not (isinstance(fs, (int, float)) and math.isfinite(fs) and fs > 0):
        problem(StreamProblem(base + ("stream",), f"{pre}: the stream has no regular sampling rate (nominal rate "
                              f"{fs!r}); a regular rate is needed"))
        return out
    nyquist = fs / 2
    if spec.rate_hz is not None and abs(fs - spec.rate_hz) > RATE_TOLERANCE * spec.rate_hz:
        problem(StreamProblem(base + ("rate",), f"{pre}: the protocol expects {_hz(spec.rate_hz)} but the stream "
                              f"runs at {_hz(fs)}"))
    wanted: list[tuple[str, Loc]] = [] if spec.fnirs is not None else [
        (ch, base + ("channels", i)) for i, ch in enumerate(spec.channels)]
    if spec.fnirs is not None:
        _nirs_pairs_present(spec, labels, base, pre, problem)
    if isinstance(spec.reference, tuple):
        wanted += [(ch, base + ("reference", i)) for i, ch in enumerate(spec.reference) if ch not in spec.channels]
    missing: list[tuple[str, Loc]] = []
    used: list[int] = []
    for ch, loc in wanted:
        try:  # the same matching the DSP uses: 'Cz' finds 'Cz', 'CZ', 'EEG Cz', 'Cz..'
            used += resolve_channels([ch], labels).tolist()
        except ValueError as exc:
            if "ambiguous" in str(exc):
                problem(StreamProblem(loc, f"{pre}: {exc}"))
            else:
                missing.append((ch, loc))
    if missing:
        names = ", ".join(repr(ch) for ch, _ in missing)
        verb = "are" if len(missing) > 1 else "is"
        problem(StreamProblem(missing[0][1], f"{pre}: channel{'s' if len(missing) > 1 else ''} {names} {verb} "
                              f"not in the stream; its channels: {', '.join(labels) or 'none'}"))
    if isinstance(spec.reference, AverageOfType) and stream.types is not None:
        used += _type_reference(spec.reference, stream, base, pre, problem)
    for name, value in (("highpass", spec.highpass_hz), ("notch", spec.notch_hz)):
        if value is not None and value >= nyquist:
            problem(StreamProblem(base + (name,), f"{pre}: {name} {_hz(value)} is at or above the stream's "
                                  f"Nyquist frequency {_hz(nyquist)}"))
    for feat in protocol.features.values():
        if feat.input == input_name:
            _check_feature(feat, fs, labels, [ch for ch, _ in wanted], problem)
            if not spec.channels and spec.fnirs is None:  # every stream channel allowed: the features' own are used
                try:
                    used += resolve_channels(feat.channels, labels).tolist()
                except ValueError as exc:
                    problem(StreamProblem(("features", feat.name, feat.kind), f"feature {feat.name!r}: {exc}"))
            fkind = feature_registry.find(feat.kind)
            if isinstance(fkind, feature_registry.FeatureKind):
                for key, message in fkind.stream_problems(feat, labels, stream.types or ()):
                    problem(StreamProblem(("features", feat.name, feat.kind, key), f"feature {feat.name!r}: {message}"))
    if units and not missing:
        found, unit_problems = input_units(stream.units, labels, sorted(set(used)), spec.unit, stream.name)
        loc = base + ("unit",) if spec.unit else base + ("stream",)
        out.problems += [StreamProblem(loc, f"{pre}: {m}") for m in unit_problems]
        out.units = found
    return out


def _nirs_pairs_present(spec, labels: Sequence[str], base: Loc, pre: str, problem) -> None:
    """Each pair the input lists has both wavelengths in the stream (the rest of the layout, optode
    positions included, is checked when the front end is built from the stream's description)."""
    from controller.dsp.nirs.pair_labels import split_nirs_label

    waves: dict[str, set[float]] = {}
    for label in labels:
        parsed = split_nirs_label(label)
        if parsed is not None and parsed[1] is not None:
            waves.setdefault(parsed[0], set()).add(parsed[1])
    if not waves:
        problem(StreamProblem(base + ("stream",), f"{pre}: the stream has no fNIRS channels labelled like S1_D1 760 "
                              f"(source, detector, wavelength in nm); its channels: {', '.join(labels[:12]) or 'none'}"
                              + (" ..." if len(labels) > 12 else "")))
        return
    for i, ch in enumerate(spec.channels):
        parsed = split_nirs_label(ch)
        if parsed is None:
            continue
        pair, wave = parsed
        have = waves.get(pair, set())
        if len(have) < 2 or (wave is not None and wave not in have):
            got = f"only {', '.join(f'{w:g} nm' for w in sorted(have))}" if have else "no channel"
            problem(StreamProblem(base + ("channels", i), f"{pre}: pair {pair} has {got} in the stream; two "
                                  f"wavelengths are needed; its pairs: {', '.join(sorted(waves))}"))


def _type_reference(ref: AverageOfType, stream: StreamFacts, base: Loc, pre: str, problem) -> list[int]:
    types = [t.strip().casefold() for t in stream.types]
    if not any(types):
        problem(StreamProblem(base + ("reference",), f"{pre}: reference {{average: all {ref.channel_type}}} needs "
                              "channel types in the stream description, and the stream gives none; list the "
                              "reference channels instead, e.g. reference: [A1, A2]"))
        return []
    cols = [i for i, t in enumerate(types) if t == ref.channel_type.casefold()]
    if not cols:
        seen = ", ".join(sorted({t for t in stream.types if t.strip()}))
        problem(StreamProblem(base + ("reference",), f"{pre}: the stream has no channel of type "
                              f"{ref.channel_type!r} for the reference; its types: {seen}"))
    return cols


def _check_feature(feat, fs: float, labels: list[str], wanted: list[str], problem) -> None:
    nyquist = fs / 2
    fbase: Loc = ("features", feat.name, feat.kind)
    fpre = f"feature {feat.name!r}"
    for name in ("band", "numerator", "denominator", "total"):
        band = getattr(feat, name)
        if band is not None and band.hi_hz >= nyquist:
            problem(StreamProblem(fbase + (name,), f"{fpre}: {name} [{_hz(band.lo_hz)}, {_hz(band.hi_hz)}] reaches "
                                  f"the stream's Nyquist frequency {_hz(nyquist)} (rate {_hz(fs)})"))
    if round(feat.window_s * fs) < 2:
        problem(StreamProblem(fbase + ("window",), f"{fpre}: window {format_quantity(feat.window_s, DURATION)} is "
                              f"under 2 samples at {_hz(fs)}"))
    if round(feat.every_s * fs) < 1:
        problem(StreamProblem(fbase + ("every",), f"{fpre}: every {format_quantity(feat.every_s, DURATION)} is "
                              f"under 1 sample at {_hz(fs)}"))
    if feat.segment_s is not None and round(feat.segment_s * fs) < 2:
        problem(StreamProblem(fbase + ("segment",), f"{fpre}: segment {format_quantity(feat.segment_s, DURATION)} "
                              f"is under 2 samples at {_hz(fs)}"))
    if feat.params is not None and hasattr(feat.params, "neighbours"):  # a Laplacian's electrodes (those the input lists are checked above)
        message = _laplacian_labels(feat, [ch for ch in feat.channels if ch not in wanted], labels, fpre)
        if message:
            problem(StreamProblem(fbase + ("laplacian",), message))
    if feat.params is not None and round(feat.window_s * fs) >= 1 and round(feat.every_s * fs) >= 1:
        for name, message in feature_registry.rate_problems(feat, fs):
            problem(StreamProblem(fbase + (name,), f"{fpre}: {name}: {message}"))


def _laplacian_labels(feat, check: list[str], labels: Sequence[str], fpre: str) -> str | None:
    what = "Laplacian electrode" if getattr(feat.params, "neighbours", ()) else "channel"
    missing = []
    for ch in check:
        try:
            resolve_channels([ch], labels)
        except ValueError as exc:
            if "ambiguous" in str(exc):
                return f"{fpre}: {exc}"
            missing.append(ch)
    if not missing:
        return None
    names = ", ".join(repr(ch) for ch in missing)
    return (f"{fpre}: {what}{'s' if len(missing) > 1 else ''} {names} not in the stream; "
            f"its channels: {', '.join(labels) or 'none'}")


def located(path: str | Path, problems: Sequence[StreamProblem], stream: str) -> ProtocolError:
    """The problems as a ProtocolError: FILE:LINE:COL: message (stream NAME: ...), in file order."""
    text, _ = read_utf8(path)
    src = Source(text, str(path))
    issues = []
    for p in problems:
        line, col = src.position(p.loc)
        issues.append(Issue(str(path), line, col, f"stream {stream!r}: {p.message}" if stream else p.message))
    return ProtocolError(issues)
