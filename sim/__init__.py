"""Simulated participants and signals that talk to the controller only through LSL, serial ports and files.

``python -m sim eeg ...`` (see :mod:`sim.cli`) streams simulated EEG from a participant model that learns from
the controller's reward markers (:mod:`sim.stream`, :mod:`sim.eeg`, :mod:`sim.participant`), with scheduled
seizures as ground truth (:mod:`sim.seizure`), or replays a real recording (:mod:`sim.replay`). Nothing here imports ``controller``.
"""
