"""The governor's SI settings in each driver's own parameter names.

The governor counts doses from settings such as ``n_pulses`` and ``frequency_hz``; each
driver names them its own way (a MagVenture train is ``pulses_per_train``, a trigger box
times a train by ``train_duration_s``), and some settings live on the stimulator's front
panel, not on the wire (a trigger box cannot set the current of the DS7A it triggers):
those are the site's ``fixed_settings`` and are never sent.
"""

from __future__ import annotations

from typing import Any, Mapping

TTL_WIDTH_S = 0.01  # the customary trigger width
MIN_TTL_WIDTH_S = 0.001


def driver_parameters(driver_kind: str, settings: Mapping[str, float], model: str | None = None) -> dict[str, Any]:
    """The ``set_parameters`` keywords for ``settings`` (the device's full SI settings)."""
    n = int(round(settings["n_pulses"])) if "n_pulses" in settings else None
    f = settings.get("frequency_hz")
    if driver_kind == "magstim":
        out: dict[str, Any] = {}
        if "intensity_pct" in settings:
            out["intensity_pct"] = int(round(settings["intensity_pct"]))
        if model == "rapid" and n is not None and n > 1 and f is not None:
            out.update(frequency_hz=f, n_pulses=n)
        return out
    if driver_kind == "magventure":
        out = {}
        if "intensity_pct" in settings:
            out["intensity_pct"] = int(round(settings["intensity_pct"]))
        if n is not None and n > 1 and f is not None:
            out.update(frequency_hz=f, pulses_per_train=n, n_trains=1, iti_s=1.0)
        return out
    if driver_kind == "triggerbox":
        train = n is not None and n > 1 and f is not None
        width = TTL_WIDTH_S if f is None else max(MIN_TTL_WIDTH_S, min(TTL_WIDTH_S, 0.4 / f))
        return {
            "pulse_width_s": width,
            "frequency_hz": f if train else None,
            "train_duration_s": (n / f) if train else None,
        }
    if driver_kind == "starstim":
        out = {}
        if "current_a" in settings:
            out["current_a"] = settings["current_a"]
        if f is not None:
            out["frequency_hz"] = f
        return out
    raise ValueError(f"no parameter translation for driver {driver_kind!r}")


def sends_settings_while_idle(driver_kind: str) -> bool:
    """Starstim takes online changes only during full stimulation; the others before firing."""
    return driver_kind != "starstim"
