"""The serial port a device driver talks through, typed.

Drivers open ports with ``serial.serial_for_url`` so that tests can hand them a pseudo-terminal or a
``loop://``/``socket://`` URL. pyserial types that function as returning ``SerialBase``, which does not
declare ``reset_input_buffer`` (every concrete port class does): :class:`SerialPort` names what the
drivers use, so the type checker holds them to it.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import serial


class SerialPort(Protocol):
    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


def open_port(url: str, **settings: Any) -> SerialPort:
    """``serial.serial_for_url(url, **settings)``, opened."""
    return cast(SerialPort, serial.serial_for_url(url, **settings))
