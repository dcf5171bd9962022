"""What each driver knows about its device, which the controller asks through the Stimulator interface:
the device's parameters for the governor's settings, a fire's time on the wire, whether settings go out
while idle, how it is built from a site entry, and what kind of output it has (for the site's rules)."""

from __future__ import annotations

import inspect

import pytest

from drivers.magstim import MagstimDriver
from drivers.magventure import MagVentureDriver
from drivers.registry import DRIVERS, driver_class, make_driver
from drivers.starstim import StarstimDriver
from drivers.triggerbox import TriggerBoxDriver

TRAIN = {"intensity_pct": 50.4, "n_pulses": 10.0, "frequency_hz": 20.0}
SINGLE = {"intensity_pct": 49.6}


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_every_registered_driver_implements_the_whole_interface(kind):
    assert not inspect.isabstract(driver_class(kind))


def test_magstim_sends_whole_percent_and_a_train_only_to_a_rapid():
    assert MagstimDriver("loop://").command_parameters(TRAIN) == {"intensity_pct": 50}
    assert MagstimDriver("loop://", model="bistim").command_parameters(SINGLE) == {"intensity_pct": 50}
    rapid = MagstimDriver("loop://", model="rapid")
    assert rapid.command_parameters(TRAIN) == {"intensity_pct": 50, "frequency_hz": 20.0, "n_pulses": 10}
    assert rapid.command_parameters({**TRAIN, "n_pulses": 1.0}) == {"intensity_pct": 50}
    assert rapid.command_parameters({"n_pulses": 5.0}) == {}  # no frequency: no train to set


def test_magventure_sends_one_train_of_n_pulses():
    mv = MagVentureDriver("loop://")
    assert mv.command_parameters(SINGLE) == {"intensity_pct": 50}
    assert mv.command_parameters(TRAIN) == {"intensity_pct": 50, "frequency_hz": 20.0, "pulses_per_train": 10,
                                            "n_trains": 1, "iti_s": 1.0}


def test_triggerbox_times_triggers_only_and_fits_the_width_into_a_fast_train():
    tb = TriggerBoxDriver("loop://")
    fixed = {"current_a": 0.0005, "pulse_width_s": 250e-6, "phases": 2.0}  # the stimulator's front panel
    assert tb.command_parameters(fixed) == {"pulse_width_s": 0.01, "frequency_hz": None, "train_duration_s": None}
    assert tb.command_parameters({**fixed, "frequency_hz": 25.0, "n_pulses": 1.0}) == {
        "pulse_width_s": 0.01, "frequency_hz": None, "train_duration_s": None}
    train = tb.command_parameters({**fixed, "frequency_hz": 50.0, "n_pulses": 10.0})
    assert train == {"pulse_width_s": pytest.approx(0.008), "frequency_hz": 50.0, "train_duration_s": 0.2}
    fast = tb.command_parameters({"frequency_hz": 1000.0, "n_pulses": 100.0})
    assert fast["pulse_width_s"] == 0.001  # never below one USB frame


def test_starstim_sends_only_what_changed():
    ss = StarstimDriver()
    settings = {"current_a": 0.001, "frequency_hz": 10.0, "phases": 2.0}
    assert ss.command_parameters(settings) == {"current_a": 0.001, "frequency_hz": 10.0}
    assert ss.command_parameters(settings, changed={"current_a"}) == {"current_a": 0.001}
    assert ss.command_parameters(settings, changed={"frequency_hz", "phases"}) == {"frequency_hz": 10.0}
    assert ss.command_parameters(settings, changed=set()) == {}


def test_fire_wire_time_is_the_fire_frame_on_the_serial_line():
    assert MagstimDriver("loop://").fire_wire_time_s == 3 * 10 / 9600  # 'EH' + CRC at 9600 baud, 8N1
    assert MagVentureDriver("loop://").fire_wire_time_s == 6 * 10 / 38400  # fe 02 03 01 crc ff at 38400 baud
    assert TriggerBoxDriver("loop://").fire_wire_time_s == 0.0  # a USB write
    assert StarstimDriver().fire_wire_time_s == 0.0  # TCP


def test_only_starstim_holds_its_settings_until_stimulation_runs():
    assert {kind: driver_class(kind).sends_settings_while_idle for kind in DRIVERS} == {
        "magstim": True, "magventure": True, "triggerbox": True, "starstim": False}


def test_output_kinds_for_the_site_rules():
    assert {kind for kind in DRIVERS if driver_class(kind).percent_output} == {"magstim", "magventure"}
    assert {kind for kind in DRIVERS if driver_class(kind).sets_current} == {"starstim"}
    assert {kind for kind in DRIVERS if driver_class(kind).waveform_output} == {"starstim"}
    assert {kind: driver_class(kind).unit_options for kind in DRIVERS if driver_class(kind).unit_options} == {
        "magstim": ("model",)}


def test_construction_from_a_site_entry():
    def on_error(reason: str) -> None:
        pass

    tb = TriggerBoxDriver.from_site("tavns", "/dev/ttyACM0", {"code": 3}, on_error)
    assert (tb.name, tb.port, tb.on_error, tb._code) == ("tavns", "/dev/ttyACM0", on_error, 3)
    assert TriggerBoxDriver.from_site("tavns", "loop://", {"name": "box"}, on_error).name == "box"
    ms = MagstimDriver.from_site("tms", "/dev/ttyUSB0", {"model": "rapid"}, on_error)
    assert (ms.name, ms.model) == ("magstim-rapid:/dev/ttyUSB0", "rapid")  # named by its model and port
    mv = MagVentureDriver.from_site("tms", "/dev/ttyUSB1", {}, on_error)
    assert (mv.name, mv.port) == ("tms", "/dev/ttyUSB1")
    ss = StarstimDriver.from_site("tacs", "10.0.0.5:1235", {"protocol": "tacs"}, on_error)
    assert (ss.name, ss.host, ss.port, ss.protocol) == ("tacs", "10.0.0.5", 1235, "tacs")
    assert (lambda d: (d.host, d.port))(make_driver("starstim", ":4000")) == ("127.0.0.1", 4000)
