"""Session assembly: one lifecycle over modalities, the processes a session starts."""
