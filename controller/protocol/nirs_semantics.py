"""Load-time checks of an fNIRS input (``fnirs:``) and its compilation.

The stream's own layout (which pairs exist, their wavelengths and optode positions) is checked
when the stream is found (controller.protocol.stream_check); here only what the file says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.dsp.nirs.pair_labels import split_nirs_label
from controller.lang import compiled as c
from controller.lang.source import Loc
from controller.protocol.nirs_raw import FnirsDecl

NIRS_KINDS = frozenset({"haemoglobin", "optode_quality"})


def nirs_spec(decl: FnirsDecl | None) -> c.NirsSpec | None:
    if decl is None:
        return None
    short = decl.short_channels
    q = decl.quality
    return c.NirsSpec(ppf=decl.ppf, reference_s=decl.reference, short_regression=short is not None,
                      short_max_m=short.max_distance if short else 0.015,
                      short_memory_s=short.memory if short else 60.0, lowpass_hz=decl.lowpass,
                      highpass_hz=decl.highpass,
                      sci_window_s=q.sci_window, jump_od=q.jump, jump_hold_s=q.hold)


def check_nirs_input(name: str, inp: Any, error: Callable[..., None]) -> None:
    """Each channel a pair (or one wavelength of a pair), each pair with the same two wavelengths."""
    for key in ("highpass", "notch", "reference"):
        if getattr(inp, key) is not None:
            where = "fnirs: {highpass: 0.01 Hz}" if key == "highpass" else "fnirs: {lowpass: 0.5 Hz}"
            error(("inputs", name, key), f"{key}: an fNIRS input filters haemoglobin, not light: use {where}"
                  + (" (line noise is far above the haemodynamic band the low-pass keeps)" if key == "notch" else "")
                  if key != "reference" else "reference: an fNIRS input has no electrical reference; remove it",
                  key=True)
    lp, hp = inp.fnirs.lowpass, inp.fnirs.highpass
    if lp is not None and hp is not None and hp >= lp:
        error(("inputs", name, "fnirs", "highpass"), f"highpass: {hp:g} Hz is not below the lowpass {lp:g} Hz")
    if inp.rate is not None and lp is not None and lp >= inp.rate / 2:
        error(("inputs", name, "fnirs", "lowpass"), f"lowpass: {lp:g} Hz is at or above the Nyquist frequency "
                                                    f"{inp.rate / 2:g} Hz of the stated rate")
    base: Loc = ("inputs", name, "channels")
    waves: dict[str, list[tuple[float, int]]] = {}
    for i, ch in enumerate(inp.channels or ()):
        parsed = split_nirs_label(ch)
        if parsed is None:
            error(base + (i,), f"channels: {ch!r} is not an fNIRS source-detector pair; name pairs like S1_D1 "
                               "(both wavelengths) or S1_D1 760 (one wavelength, in nm), as MNE names fNIRS channels")
            continue
        pair, wave = parsed
        if wave is not None:
            waves.setdefault(pair, []).append((wave, i))
    sets = {pair: sorted({w for w, _ in listed}) for pair, listed in waves.items()}
    common = max(sets.values(), key=len, default=[])
    for pair, listed in waves.items():
        have = sets[pair]
        if len(have) == 1:
            other = [w for w in common if w != have[0]]
            hint = f" (e.g. {pair} {other[0]:g})" if other else ""
            error(base + (listed[0][1],),
                  f"channels: pair {pair} has only its {have[0]:g} nm channel; the modified Beer-Lambert law needs "
                  f"two wavelengths per pair: list its other wavelength too{hint}, or name the pair alone ({pair}) "
                  "for both")
        elif len(have) > 2:
            error(base + (listed[0][1],), f"channels: pair {pair} lists {len(have)} wavelengths "
                                          f"({', '.join(f'{w:g}' for w in have)} nm); fNIRS here uses two per pair")
        elif len(common) == 2 and have != common:
            error(base + (listed[0][1],), f"channels: pair {pair} has wavelengths {have[0]:g}/{have[1]:g} nm but "
                                          f"other pairs {common[0]:g}/{common[1]:g} nm; a device uses one pair of "
                                          "wavelengths")


def check_nirs_feature(kind: str, inp: Any, input_name: str, loc: Loc, error: Callable[..., None]) -> None:
    """fNIRS kinds read fNIRS inputs and nothing else reads them (their channels are haemoglobin per pair)."""
    if inp is None:
        return
    if kind in NIRS_KINDS and inp.fnirs is None:
        error(loc, f"input: {input_name!r} is not an fNIRS input; {kind} reads haemoglobin, which an input "
                   "computes when it has fnirs: (e.g. fnirs: {})")
    elif kind not in NIRS_KINDS and inp.fnirs is not None:
        error(loc, f"input: {input_name!r} is an fNIRS input; its features are {', '.join(sorted(NIRS_KINDS))} "
                   f"(haemoglobin and optode quality per pair), not {kind}")
