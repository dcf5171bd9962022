"""A trigger box whose pulse thread wakes late on purpose, as on a loaded machine.

Why: a slot is skipped only when the pulse thread wakes more than half a period late. Waiting for
load to do that makes a flaky test; instead the lateness goes through the driver's one sleeping
seam (``TriggerBoxDriver._sleep_until``): the wait for a chosen rising edge ends ``late_s`` later
than asked, so the thread is at least that late, whatever the machine does.
"""

from __future__ import annotations

from drivers.triggerbox import TriggerBoxDriver


class LateWake:
    """Makes the wake-up for pulse ``pulse``'s rising edge ``late_s`` late, in the first ``trains`` trains."""

    def __init__(self, pulse: int, late_s: float, trains: int = 1) -> None:
        self.pulse, self.late_s, self.left = pulse, late_s, trains

    def __call__(self, t: float, pulse: int, edge: str) -> float:
        """The time to wake at instead of ``t``."""
        if edge == "rise" and pulse == self.pulse and self.left > 0:
            self.left -= 1
            return t + self.late_s
        return t

    def install(self, monkeypatch) -> None:
        """On every TriggerBoxDriver of this process (e.g. the one a session opens itself)."""
        sleep = TriggerBoxDriver._sleep_until

        def late(driver: TriggerBoxDriver, t: float, pulse: int, edge: str) -> bool:
            return sleep(driver, self(t, pulse, edge), pulse, edge)

        monkeypatch.setattr(TriggerBoxDriver, "_sleep_until", late)


class LateWakeUp(TriggerBoxDriver):
    """A trigger box driver whose pulse thread wakes ``late_s`` late for pulse ``late_for``'s rising edge."""

    def __init__(self, *args, late_for: int, late_s: float, trains: int = 1_000_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.late = LateWake(late_for, late_s, trains)

    def _sleep_until(self, t: float, pulse: int, edge: str) -> bool:
        return super()._sleep_until(self.late(t, pulse, edge), pulse, edge)
