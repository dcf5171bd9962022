"""Command line front end: ``python -m sim eeg ...`` (also reached as ``neuroreflex sim eeg ...``).

Streams until the duration elapses, Ctrl-C or SIGTERM, and exits 0 on a clean stop.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sim.participant import DEFAULT_MARKER_STREAM
from sim.stream import DEFAULT_NAME


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sim", description="Simulated participants and signals over LSL.")
    sub = parser.add_subparsers(dest="command", required=True)
    eeg = sub.add_parser("eeg", help="stream simulated EEG (or replay a recording) over LSL in real time")
    eeg.add_argument("--channels", type=_positive_int, default=64, help="channel count (default 64)")
    eeg.add_argument("--rate", type=_positive_float, default=500.0, help="sampling rate in Hz (default 500)")
    eeg.add_argument("--chunk", type=_positive_int, default=10, help="samples per pushed chunk (default 10)")
    eeg.add_argument("--name", default=None, help=f"LSL stream name (default {DEFAULT_NAME}, or neuroreflex-replay)")
    eeg.add_argument("--source-id", default=None, help="LSL source_id (default derived from the settings)")
    eeg.add_argument("--replay", metavar="FILE", default=None, help="replay EDF/BDF/FIF/XDF instead of simulating")
    eeg.add_argument("--xdf-stream", default=None, help="with --replay of an XDF file: the stream name to replay")
    eeg.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    eeg.add_argument("--learning-rate", type=float, default=None, help="participant learning rate (default 0.001)")
    eeg.add_argument("--line-freq", type=float, choices=(0.0, 50.0, 60.0), default=50.0, help="mains Hz, 0 = none")
    eeg.add_argument("--marker-stream", default=DEFAULT_MARKER_STREAM, help="controller marker stream to learn from")
    eeg.add_argument("--duration", type=_positive_float, default=None, help="stop after this many seconds")
    eeg.add_argument("--quiet", action="store_true", help="no startup message")
    _add_device_parser(sub)
    return parser


def _add_device_parser(sub) -> None:
    from sim.devices import KINDS

    dev = sub.add_parser("device", help="a virtual stimulator speaking a real device protocol on a pseudo-terminal/TCP")
    dev.add_argument("kind", choices=sorted(KINDS))
    dev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="device option, e.g. --set model=rapid (numbers are parsed)")


def _parse_options(pairs: list[str], factory) -> dict:
    """KEY=VALUE pairs converted to the type of the factory's default for KEY (str when unknown)."""
    import inspect

    target = factory
    annotation = inspect.signature(factory).return_annotation  # create(**options) -> DeviceClass
    if isinstance(annotation, str):
        target = getattr(inspect.getmodule(factory), annotation, factory)
    params = inspect.signature(target).parameters.items()
    defaults = {n: p.default for n, p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        if key not in defaults:
            raise ValueError(f"unknown option {key!r}; options: {', '.join(defaults)}")
        default = defaults[key]
        if isinstance(default, bool):
            options[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, (int, float)) or default is None and value.replace(".", "", 1).isdigit():
            options[key] = float(value) if "." in value or isinstance(default, float) else int(value)
        else:
            options[key] = value
    return options


def _run_device(args: argparse.Namespace, stop: threading.Event) -> None:
    import importlib

    from sim.devices import KINDS

    factory = importlib.import_module(KINDS[args.kind]).create
    device = factory(**_parse_options(args.set, factory))
    port = device.start()
    print(f"neuroreflex sim: virtual {args.kind} on {port} (Ctrl-C to stop)", flush=True)
    try:
        stop.wait()
    finally:
        device.stop()
        print(f"neuroreflex sim: virtual {args.kind} stopped; {len(device.log_snapshot())} commands received",
              flush=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of killing the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_eeg(args: argparse.Namespace, stop: threading.Event) -> None:
    if args.replay:
        from sim.replay import DEFAULT_REPLAY_NAME, run_replay

        run_replay(
            args.replay,
            name=args.name or DEFAULT_REPLAY_NAME,
            chunk=args.chunk,
            source_id=args.source_id,
            stream_name=args.xdf_stream,
            duration=args.duration,
            stop_event=stop,
            verbose=not args.quiet,
        )
        return
    from sim.stream import run_eeg_stream

    stats = run_eeg_stream(
        channels=args.channels,
        rate=args.rate,
        chunk=args.chunk,
        name=args.name or DEFAULT_NAME,
        source_id=args.source_id,
        line_freq=args.line_freq,
        seed=args.seed,
        learning_rate=args.learning_rate,
        marker_stream=args.marker_stream or None,
        duration=args.duration,
        stop_event=stop,
        verbose=not args.quiet,
    )
    if not args.quiet:
        print(
            f"neuroreflex sim: stopped after {stats.seconds:.1f} s ({stats.samples} samples); "
            f"{stats.rewards} rewards, theta/beta mean {stats.mean_tbr:.2f}",
            flush=True,
        )


def _quiet_liblsl() -> None:
    """liblsl logs INFO lines by default; keep errors only unless asked (like a real amplifier app)."""
    import os

    import pylsl

    if os.environ.get("NEUROREFLEX_LSL_VERBOSE") or os.environ.get("LSLAPICFG"):
        return
    try:
        pylsl.set_config_content("[log]\nlevel = -2\n")
    except NotImplementedError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    _quiet_liblsl()
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            if args.command == "eeg":
                _run_eeg(args, stop)
            elif args.command == "device":
                _run_device(args, stop)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError) as exc:
        print(f"sim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
