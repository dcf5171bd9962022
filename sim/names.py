"""Default LSL stream names of the simulators, in a module with no heavy imports.

Why: ``sim device`` processes start from the same CLI as ``sim eeg``; importing the EEG
generator (scipy.signal) just to read these names cost them ~2 s of start-up.
"""

DEFAULT_NAME = "neuroreflex-sim-eeg"  # simulated EEG; its participant state is "<name>-state"
# the controller's marker stream the participant learns from: the only session's on the network
# (a session's outlets are neuroreflex-<session id>-*; a session started with --sim names its own)
DEFAULT_MARKER_STREAM = "neuroreflex-*-markers"
DEFAULT_REPLAY_NAME = "neuroreflex-replay"  # a replayed recording; its annotations are "<name>-annotations"
DEFAULT_MEG_NAME = "neuroreflex-sim-meg"  # `sim meg`; its true alpha amplitude is "<name>-state"
DEFAULT_RESP_NAME = "neuroreflex-sim-resp"  # standalone `sim resp`; its true phase is "<name>-phase"
DEFAULT_FNIRS_NAME = "neuroreflex-sim-fnirs"  # `sim fnirs`; its true neural HbO is "<name>-state"
DEFAULT_FNIRS_REPLAY_NAME = "neuroreflex-replay-fnirs"  # `sim fnirs --replay`; annotations "<name>-annotations"
