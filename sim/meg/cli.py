"""``sim meg``: its options and its run (sim/cli.py adds the parser and dispatches here).

Light to import: numpy, MNE and the generator load only when a MEG stream is run.
"""

from __future__ import annotations

import argparse
import threading

from sim.argtypes import positive_float, positive_int
from sim.names import DEFAULT_MARKER_STREAM, DEFAULT_MEG_NAME

MIN_RATE, MAX_RATE = 1000.0, 5000.0


def _rate(text: str) -> float:
    value = positive_float(text)
    if not MIN_RATE <= value <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"a MEG rate is {MIN_RATE:g}-{MAX_RATE:g} Hz, got {value:g}")
    return value


def add_meg_parser(sub) -> None:
    meg = sub.add_parser("meg", help="stream simulated MEG (a real Neuromag layout, posterior alpha that learns) "
                                     "over LSL in real time")
    meg.add_argument("--name", default=DEFAULT_MEG_NAME, help=f"LSL stream name (default {DEFAULT_MEG_NAME})")
    meg.add_argument("--source-id", default=None, help="LSL source_id (default derived from the settings)")
    meg.add_argument("--rate", type=_rate, default=1000.0, help="sampling rate in Hz, 1000-5000 (default 1000)")
    meg.add_argument("--chunk", type=positive_int, default=10, help="samples per pushed chunk (default 10)")
    meg.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    meg.add_argument("--marker-stream", default=DEFAULT_MARKER_STREAM,
                     help="the controller's marker stream to learn from (default: the only one matching "
                          f"{DEFAULT_MARKER_STREAM})")
    meg.add_argument("--learning-rate", type=float, default=None,
                     help="rise of the log alpha amplitude per reward (default 0.001)")
    meg.add_argument("--layout", metavar="FIF", default=None,
                     help="a Neuromag .fif whose channels to stream (default ../shared/data/meg/"
                          "sample_audvis_trunc_raw_sss.fif)")
    meg.add_argument("--all-channels", action="store_true",
                     help="stream the file's stim, EEG and EOG channels too (default: its MEG channels)")
    meg.add_argument("--ssp", metavar="FILE", action="append", default=[],
                     help="add the projectors of an MNE -proj.fif file to the stream's description (repeatable)")
    meg.add_argument("--line-freq", type=float, choices=(0.0, 50.0, 60.0), default=50.0, help="mains Hz, 0 = none")
    meg.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    meg.add_argument("--quiet", action="store_true", help="no startup message")


def run_meg(args: argparse.Namespace, stop: threading.Event) -> None:
    from sim.meg.layout import DEFAULT_LAYOUT, read_layout, read_projectors
    from sim.meg.stream import MegStreamer

    layout = read_layout(args.layout, all_channels=args.all_channels)
    for path in args.ssp:
        layout = layout.with_projectors(read_projectors(path))
    streamer = MegStreamer(layout, rate=args.rate, chunk=args.chunk, name=args.name, source_id=args.source_id,
                           line_freq=args.line_freq, seed=args.seed, learning_rate=args.learning_rate,
                           marker_stream=args.marker_stream or None, layout_file=args.layout or DEFAULT_LAYOUT)
    with streamer:
        if not args.quiet:
            print(streamer.describe(), flush=True)
        stats = streamer.run(duration=args.duration, stop_event=stop)
    if not args.quiet:
        print(f"neuroreflex sim: stopped after {stats.seconds:.1f} s ({stats.samples} samples); {stats.rewards} "
              f"rewards, alpha x{stats.mean_gain:.2f} of its start", flush=True)
