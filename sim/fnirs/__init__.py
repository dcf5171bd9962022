"""Simulated (and replayed) continuous-wave fNIRS over LSL: ``python -m sim fnirs`` (sim/fnirs/cli.py).

The stream format the controller reads is documented in sim/fnirs/stream_info.py.
"""
