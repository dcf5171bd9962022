"""Shared test set-up. Tests mirror the packages they test (tests/controller/<package>/, tests/drivers/,
tests/sim/, tests/bench/); the helpers they share sit here at the top (helpers.py: wait_for, session_journal,
session_started; amplifier.py, stim_session_rig.py) and are imported by name: pytest puts this folder on
sys.path with this conftest. Sessions are isolated by their ids, so files run in parallel (pytest-xdist, see
pyproject.toml)."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture(autouse=True)
def _keep_sigterm():
    """``controller.cli.main`` turns SIGTERM into KeyboardInterrupt for the session it runs; a test that calls
    it in-process gets pytest's own handler back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
