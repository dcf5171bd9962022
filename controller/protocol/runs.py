"""Choosing one run of a multi-run fMRI protocol (e.g. target rising from run to run, then a transfer run)."""

from __future__ import annotations

import dataclasses

from controller.lang.compiled import Protocol, RunSpec


class RunChoiceError(ValueError):
    """The run asked for is not in the protocol; the message lists the runs it has."""


def select_run(protocol: Protocol, run: str | int | None) -> Protocol:
    """The protocol as it runs in ``run`` (a name, or a 1-based number; None = the first run).

    A run sets fixed thresholds (the target level) and can switch feedback off (transfer run).
    Protocols without runs are returned unchanged (asking for a run is then an error).
    """
    if not protocol.runs:
        if run is not None:
            raise RunChoiceError(f"protocol {protocol.name!r} has no runs; leave out --run")
        return protocol
    chosen = _find(protocol.runs, run)
    if chosen is None:
        names = ", ".join(f"{r.index + 1} ({r.name})" for r in protocol.runs)
        raise RunChoiceError(f"protocol {protocol.name!r} has no run {run!r}; its runs: {names}")
    thresholds = dict(protocol.thresholds)
    for name, value in chosen.thresholds.items():
        thresholds[name] = dataclasses.replace(thresholds[name], fixed=value)
    feedback, rules = protocol.feedback, protocol.rules
    if not chosen.feedback:  # transfer run: no bar and no reward, markers and stimulation unchanged
        feedback = None
        rules = tuple(r for r in rules if r.do.feedback is None)
    return dataclasses.replace(protocol, thresholds=thresholds, feedback=feedback, rules=rules, run=chosen)


def _find(runs: tuple[RunSpec, ...], run: str | int | None) -> RunSpec | None:
    if run is None:
        return runs[0]
    if isinstance(run, int) or (isinstance(run, str) and run.isdigit()):
        k = int(run) - 1
        return runs[k] if 0 <= k < len(runs) else None
    return next((r for r in runs if r.name == run), None)
