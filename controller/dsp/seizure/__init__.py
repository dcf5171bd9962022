"""Streaming seizure-onset detectors (line length, area, half-waves) and their trend."""
