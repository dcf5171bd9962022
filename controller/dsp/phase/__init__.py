"""Streaming phase estimation and phase-locked triggering."""
