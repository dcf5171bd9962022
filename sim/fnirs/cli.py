"""``python -m sim fnirs ...`` (also ``neuroreflex sim fnirs ...``): simulated or replayed fNIRS over LSL.

Without ``--replay``: the simulated participant (sim/fnirs/generator.py, sim/fnirs/participant.py)
streams light intensities of a prefrontal montage (sim/fnirs/montage.py) at ``--rate`` Hz, its
true neural HbO on ``<name>-state``, learning from the controller's markers. With ``--replay FILE``:
a SNIRF file or NIRx folder at its own rate (``--speed`` x faster), its annotations on
``<name>-annotations``. The stream format: sim/fnirs/stream_info.py. Streams until ``--duration``,
the end of a ``--once`` replay, Ctrl-C or SIGTERM; exits 0 on a clean stop, 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
import threading

from sim.argtypes import non_negative_float, positive_float, positive_int
from sim.entry import quiet_liblsl, stop_on_signals
from sim.names import DEFAULT_FNIRS_NAME, DEFAULT_FNIRS_REPLAY_NAME, DEFAULT_MARKER_STREAM


def _labels(text: str) -> tuple[str, ...]:
    labels = tuple(x.strip() for x in text.split(",") if x.strip())
    if not labels:
        raise argparse.ArgumentTypeError(f"expected comma-separated labels, got {text!r}")
    return labels


def build_parser(prog: str = "sim fnirs") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Stream simulated continuous-wave fNIRS (a prefrontal "
                                "montage, 760/850 nm) or replay a SNIRF/NIRx recording over LSL in real time.")
    p.add_argument("--name", default=None,
                   help=f"LSL stream name (default {DEFAULT_FNIRS_NAME}, or {DEFAULT_FNIRS_REPLAY_NAME})")
    p.add_argument("--source-id", default=None, help="LSL source_id (default derived from the settings)")
    p.add_argument("--rate", type=positive_float, default=None, help="sampling rate in Hz (default 10)")
    p.add_argument("--chunk", type=positive_int, default=1, help="samples per pushed chunk (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--marker-stream", default=DEFAULT_MARKER_STREAM,
                   help="the controller's marker stream: block_start:<label> and rewards (default: the only "
                        f"one matching {DEFAULT_MARKER_STREAM}; '' for none)")
    p.add_argument("--active", type=_labels, default=("regulate",), metavar="LABELS",
                   help="block labels during which the participant regulates (comma-separated, default regulate)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="fraction of the remaining headroom the gain gains per reward (default 0.02)")
    p.add_argument("--start-gain", type=float, default=None, help="the gain before any reward, 0..1 (default 0.4)")
    p.add_argument("--target", type=_labels, default=None, metavar="PAIRS",
                   help="long pairs that carry the brain response, e.g. S4_D4,S5_D5 (default all long pairs)")
    p.add_argument("--motion-every", type=positive_float, default=None, metavar="SECONDS",
                   help="motion artefacts at random times, on average this many seconds apart (default none)")
    p.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    p.add_argument("--replay", metavar="FILE", default=None,
                   help="replay a SNIRF file or NIRx folder instead of simulating "
                        "(e.g. ../shared/data/fnirs/snirf_samples_neuro_run01.snirf)")
    p.add_argument("--speed", type=positive_float, default=1.0,
                   help="with --replay: x times faster than real time (timestamps follow; default 1)")
    p.add_argument("--start", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="with --replay: begin this far into the recording (default 0)")
    p.add_argument("--once", action="store_true", help="with --replay: stop at the end instead of looping")
    p.add_argument("--quiet", action="store_true", help="no startup message")
    return p


def _run_simulated(args: argparse.Namespace, stop: threading.Event) -> None:
    from sim.fnirs.generator import FnirsGenerator
    from sim.fnirs.participant import FnirsParticipant, FnirsParticipantConfig
    from sim.fnirs.stream import FnirsStreamer

    cfg = FnirsParticipantConfig(active_labels=tuple(args.active))
    overrides = {k: v for k, v in (("learning_rate", args.learning_rate), ("start_gain", args.start_gain))
                 if v is not None}
    if overrides:
        cfg = FnirsParticipantConfig(**{**cfg.__dict__, **overrides})
    participant = FnirsParticipant(cfg)
    generator = FnirsGenerator(rate=args.rate or 10.0, seed=args.seed, target=args.target,
                               motion_every_s=args.motion_every)
    streamer = FnirsStreamer(generator, participant, args.name or DEFAULT_FNIRS_NAME, chunk=args.chunk,
                             source_id=args.source_id, marker_stream=args.marker_stream or None)
    with streamer:
        if not args.quiet:
            print(streamer.describe(), flush=True)
        stats = streamer.run(duration=args.duration, stop_event=stop)
    if not args.quiet:
        print(f"neuroreflex sim: stopped after {stats.seconds:.1f} s ({stats.samples} samples); {stats.blocks} "
              f"blocks, {stats.rewards} rewards, gain {stats.gain:.3f}, {stats.motion_events} motion events",
              flush=True)


def _run_replay(args: argparse.Namespace, stop: threading.Event) -> None:
    from sim.fnirs.replay import FnirsReplayStreamer, load_fnirs

    simulator_only = [flag for flag, given in (("--rate", args.rate is not None), ("--target", args.target),
                                               ("--motion-every", args.motion_every is not None),
                                               ("--learning-rate", args.learning_rate is not None),
                                               ("--start-gain", args.start_gain is not None)) if given]
    if simulator_only:
        raise ValueError(f"{', '.join(simulator_only)}: options of the simulator; a --replay streams the file "
                         f"as recorded, at its own rate")
    recording, layout = load_fnirs(args.replay)
    streamer = FnirsReplayStreamer(recording, layout, args.name or DEFAULT_FNIRS_REPLAY_NAME, chunk=args.chunk,
                                   speed=args.speed, start_s=args.start, loop=not args.once,
                                   source_id=args.source_id)
    streamer.open()
    try:
        if not args.quiet:
            print(streamer.describe(), flush=True)
        stats = streamer.run(duration=args.duration, stop_event=stop)
    finally:
        streamer.close()
    if not args.quiet:
        print(f"neuroreflex sim: replay stopped after {stats.samples} samples "
              f"({stats.samples / recording.rate:.1f} s of recording, {stats.passes} pass(es)); "
              f"{stats.markers} annotation markers", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sim fnirs``; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    quiet_liblsl()
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            if args.replay:
                _run_replay(args, stop)
            else:
                _run_simulated(args, stop)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError) as exc:
        print(f"sim fnirs: error: {exc}", file=sys.stderr)
        return 2
    return 0
