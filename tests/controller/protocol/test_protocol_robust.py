"""Whatever the text, loading ends in a Protocol or a ProtocolError with positioned issues,
never in another exception (editors call the loader on every keystroke)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from controller.lang.compiled import Protocol
from controller.protocol import ProtocolError, loads_protocol

EXAMPLE = protocols.find("tbr_adhd").read_text(encoding="utf-8")
ALPHABET = st.sampled_from(list(" \n:-[]{},'\"#&*!|>0123456789abz.<%µ") + ["Hz", "ms", " and ", " for ", "\t"])


def _load(text: str) -> None:
    try:
        result = loads_protocol(text, "fuzz.yaml")
    except ProtocolError as exc:
        assert exc.issues
        lines = text.count("\n") + 2
        for issue in exc.issues:
            assert 1 <= issue.line <= lines, issue
            assert issue.col >= 1, issue
            assert issue.message and "\n" not in issue.message, issue
    else:
        assert isinstance(result, Protocol)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_edits_of_a_real_protocol_never_crash(data: st.DataObject) -> None:
    text = EXAMPLE
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:pos] + data.draw(ALPHABET) + text[pos:]
        else:
            text = text[:pos] + text[pos + data.draw(st.integers(1, 12)):]
    _load(text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    _load(text)
