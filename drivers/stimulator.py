"""The stimulator side of the output interface: what every device driver implements.

A driver speaks one device's real protocol over a port opened with
``serial.serial_for_url`` (or a TCP socket) and knows that device's timing: it reports
when the device is ready and refuses, with a reason, a command the device cannot take
yet, instead of queueing it blindly. Drivers never decide whether a command is safe:
the safety governor does that before ``send`` is called. A driver is a leaf: it imports
only this interface and standard/serial libraries.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drivers.base import Command, Output, OutputError
from drivers.delivery import TrainReport

# Command kinds a stimulator accepts (payload keys in brackets):
ARM = "arm"  # {}
DISARM = "disarm"  # {}
SET = "set"  # {parameter: value, ...} in SI units: intensity_pct, current_a, frequency_hz, pulse_width_s, ...
FIRE = "fire"  # {} one pulse / one train as configured
START = "start"  # {} start continuous stimulation (tACS/tES, trains)
STOP = "stop"  # {} stop continuous stimulation
STIMULATOR_COMMANDS = frozenset({ARM, DISARM, SET, FIRE, START, STOP})


class DeviceError(OutputError):
    """The device answered with an error, did not answer, or the link broke."""


class NotReady(DeviceError):
    """The device cannot take this command yet (arming, charging, blanking); the message says until when/why."""


@dataclass(frozen=True)
class DeviceStatus:
    """What the device (or the driver's model of it) says about itself, at LSL time ``t``."""

    t: float
    connected: bool
    remote: bool = False  # under remote control (Magstim) / enabled (MagVenture)
    armed: bool = False
    ready: bool = False  # can fire/start now
    ready_at: float | None = None  # LSL time it will be ready, when known
    error: str | None = None  # the device's error text, if any
    parameters: dict[str, Any] = field(default_factory=dict)  # current settings in SI units


class Stimulator(Output):
    """A stimulator: connect, arm, disarm, set parameters, fire/start/stop, status, close.

    ``send(Command)`` dispatches the kinds in STIMULATOR_COMMANDS to the methods below and
    returns the LSL time the bytes left, so the loop latency is measured to the wire.
    """

    accepts = STIMULATOR_COMMANDS
    counts_pulses: bool = False  # True: every train's delivered pulses are reported (report_trains_to)
    _train_listener: Callable[[TrainReport], object] | None = None  # its return value is ignored

    # What the device is, asked of the class before any unit is opened (site validation, set-up):
    percent_output: ClassVar[bool] = False  # TMS: output in % of maximum stimulator output, never a current
    sets_current: ClassVar[bool] = False  # the current is a command parameter, not fixed on the stimulator
    waveform_output: ClassVar[bool] = False  # a continuous waveform (tACS): its charge needs no pulse width
    sends_settings_while_idle: ClassVar[bool] = True  # False: settings go out only once stimulation runs
    unit_options: ClassVar[tuple[str, ...]] = ()  # site options naming the unit model: a stand-in must match

    @classmethod
    def for_port(cls, port: str, **options: Any) -> Stimulator:
        """A driver for ``port`` as a site config writes it (a serial device or URL), not yet connected."""
        return cls(port, **options)  # type: ignore[call-arg]

    @classmethod
    def from_site(cls, name: str, port: str, options: Mapping[str, Any],
                  on_error: Callable[[str], None]) -> Stimulator:
        """The driver for the site's device ``name``, not yet connected. ``on_error`` is for drivers
        that find faults in a thread of their own; the others raise them from their calls. By default
        the driver is named after the site device (a ``name`` option wins)."""
        return cls.for_port(port, **{"name": name, **options})

    @property
    def fire_wire_time_s(self) -> float:
        """Time a fire command's bytes take on the wire, so a timed pulse can be sent that much early.
        0 for devices whose commands are not clocked out on a serial line (USB writes, TCP)."""
        return 0.0

    @abstractmethod
    def command_parameters(self, settings: Mapping[str, float],
                           changed: Collection[str] | None = None) -> dict[str, Any]:
        """The ``set_parameters`` keywords that give the device ``settings`` (the governor's full SI
        settings, the site's fixed ones included). ``changed``: the settings this change is about
        (None: all of them). Settings the device cannot take on the wire are left out."""

    def report_trains_to(self, listener: Callable[[TrainReport], object] | None) -> bool:
        """Have ``listener`` called with a TrainReport whenever a train ends (from the driver's own
        thread; it must not block). Returns ``counts_pulses``: False means this driver cannot count a
        train's pulses and reports nothing, so the caller must assume the planned dose."""
        self._train_listener = listener
        return self.counts_pulses

    def _report_train(self, report: TrainReport) -> None:
        """Hand ``report`` to the listener; a failing listener never stops the driver's thread."""
        listener = self._train_listener
        if listener is None:
            return
        try:
            listener(report)
        except Exception:  # the listener logs and inhibits on its side; the pulse thread must go on
            pass

    def open(self) -> None:
        self.connect()

    def send(self, command: Command) -> float:
        kind, payload = command.kind, dict(command.payload)
        if kind == ARM:
            return self.arm()
        if kind == DISARM:
            return self.disarm()
        if kind == SET:
            return self.set_parameters(**payload)
        if kind == FIRE:
            return self.fire()
        if kind == START:
            return self.start()
        if kind == STOP:
            return self.stop()
        raise OutputError(f"{self.name}: cannot send a {kind!r} command (accepts {sorted(self.accepts)})")

    @abstractmethod
    def connect(self) -> None:
        """Open the port and take remote control; the device stays disarmed."""

    @abstractmethod
    def arm(self) -> float:
        """Ask the device to arm; returns t_sent. Readiness follows (see status().ready_at)."""

    @abstractmethod
    def disarm(self) -> float:
        """Disarm now. Must work in any state, and be quick: it is the E-STOP path."""

    @abstractmethod
    def set_parameters(self, **params: Any) -> float:
        """Change settings (SI units); raises NotReady/DeviceError with the reason."""

    @abstractmethod
    def fire(self) -> float:
        """One pulse (or the configured train); raises NotReady if the device cannot fire now."""

    def start(self) -> float:
        raise OutputError(f"{self.name}: this device has no continuous stimulation (use fire)")

    def stop(self) -> float:
        raise OutputError(f"{self.name}: this device has no continuous stimulation (use fire)")

    @abstractmethod
    def status(self) -> DeviceStatus:
        """The current status; may query the device."""

    @abstractmethod
    def close(self) -> None:
        """Disarm, give up remote control, close the port; safe to call twice."""
