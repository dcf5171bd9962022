"""Every site-config driver name opens a real driver against its virtual device."""

from __future__ import annotations

import pytest

from drivers.registry import DRIVERS, driver_class, make_driver
from drivers.stimulator import Stimulator
from sim.devices import KINDS, create


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_each_driver_connects_to_its_virtual_device_and_closes(kind):
    assert kind in KINDS
    assert issubclass(driver_class(kind), Stimulator)
    device = create(kind)
    port = device.start()
    try:
        driver = make_driver(kind, port)
        driver.connect()
        status = driver.status()
        assert status.connected and not status.armed
        driver.close()
    finally:
        device.stop()


def test_unknown_driver_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown driver 'magstym'; drivers: magstim, magventure"):
        driver_class("magstym")
