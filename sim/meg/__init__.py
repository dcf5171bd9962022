"""Simulated MEG (``sim meg``): a Neuromag Vectorview stream over LSL whose posterior alpha a participant learns
to raise from the controller's rewards. Layout from a real .fif (layout.py), the stream's description
(stream_info.py, which documents the format), the signals (generator.py), the participant
(participant.py), real-time streaming (stream.py) and the command line (cli.py)."""
