"""Offline references: whole-recording computations the online code is checked against.

Never imported by the hot path; tests, benches and reports use them."""
