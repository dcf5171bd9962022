"""The one clock: LSL's local_clock (monotonic seconds, shared by every LSL process on the host)."""

from pylsl import local_clock as now

__all__ = ["now"]
