"""Qt displays that follow a running session over LSL: the participant's thermometer and the
operator's fMRI panel.

They are off the hot path by construction: each runs in its own process (``neuroreflex display
...``) and only reads the controller's LSL outlets (``<prefix>-feedback``, ``<prefix>-markers``,
``<prefix>-fmri-qc``), pulled without blocking from a Qt timer. Nothing in the controller imports
this package; it needs the optional ``gui`` extra (pyqtgraph, PySide6).
"""
