"""Simulated and replayed fMRI acquisition (volumes over LSL or into a scanner export folder)."""
