"""The fNIRS front end: light intensities (or OD) per pair and wavelength in, haemoglobin out.

Per chunk, all causal and vectorised over pairs and samples:

1. optical density against a per-channel reference (``optical_density``);
2. quality per pair from that OD: scalp coupling index and motion jumps (``quality``);
3. modified Beer-Lambert with MNE's coefficients and ppf -> HbO, HbR in mol/L (``beer_lambert``);
4. an optional causal Butterworth low-pass (default 0.5 Hz) on HbO/HbR: the cardiac pulsation
   and faster noise go before anything is fitted or read;
5. short-separation regression of each long pair on its nearest short pair (``short_separation``).
   It runs after the low-pass so beta is fitted in the band the output keeps (the cardiac
   coupling between scalp and cortex need not equal the slow systemic one).

6. an optional causal Butterworth high-pass (``highpass_hz``, e.g. 0.01 Hz) of the long pairs'
   HbO/HbR against slow drift. It is here, not in the input's generic ``highpass:``, because that
   would also filter the sci and motion channels, which are levels, not signals.

Outputs, in this order:
- per LONG pair in layout order: ``'S1_D1 hbo'``, ``'S1_D1 hbr'`` (types 'hbo', 'hbr');
- per long pair: ``'S1_D1 sci'`` (type 'sci', in [-1, 1]) and ``'S1_D1 motion'`` (type 'motion', 0/1);
- per SHORT pair: ``'S9_D9 hbo'``, ``'S9_D9 hbr'``, low-passed but not regressed, typed
  'hbo_short'/'hbr_short': a protocol can read the systemic signal by name, while a selection of
  every 'hbo' channel does not pick a scalp channel up. Short pairs get no sci/motion output
  (they are regressors; their quality matters through the long pairs they correct).
Long pairs with no short partner pass the regression unchanged and are listed in ``unregressed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import signal  # type: ignore[import-untyped]  # scipy: no type stubs installed

from controller.dsp.filters import StreamingSOS

from .beer_lambert import DEFAULT_PPF, BeerLambert, mbll_matrices
from .layout import NirsLayout
from .optical_density import OpticalDensity
from .quality import DEFAULT_JUMP_LAG_S, DEFAULT_JUMP_OD, MotionJumps, ScalpCoupling
from .short_separation import ShortRegression

LOWPASS_ORDER = 4  # Butterworth order of the HbO/HbR low-pass
HIGHPASS_ORDER = 2  # Butterworth order of the drift high-pass (gentle: blocks last tens of seconds)


def haemoglobin_highpass_sos(fs: float, cutoff_hz: float) -> np.ndarray:
    """Causal Butterworth high-pass of HbO/HbR (drift)."""
    if not 0.0 < cutoff_hz < fs / 2:
        raise ValueError(f"fNIRS high-pass {cutoff_hz} Hz must lie in (0, {fs / 2}) Hz at fs={fs} Hz")
    sos: np.ndarray = signal.butter(HIGHPASS_ORDER, cutoff_hz, btype="highpass", fs=fs, output="sos")
    return sos


def haemoglobin_lowpass_sos(fs: float, cutoff_hz: float) -> np.ndarray:
    """Causal Butterworth low-pass of HbO/HbR."""
    if not 0.0 < cutoff_hz < fs / 2:
        raise ValueError(f"fNIRS low-pass {cutoff_hz} Hz must lie in (0, {fs / 2}) Hz at fs={fs} Hz")
    sos: np.ndarray = signal.butter(LOWPASS_ORDER, cutoff_hz, btype="lowpass", fs=fs, output="sos")
    return sos


class NirsFrontEnd:
    """Continuous-wave fNIRS stream columns -> HbO/HbR (+ quality) per pair; a ``FrontEnd``."""

    def __init__(
        self,
        layout: NirsLayout,
        fs: float,
        *,
        measure: str = "intensity",
        ppf: float | Sequence[float] = DEFAULT_PPF,
        reference_s: float = 10.0,
        reference: np.ndarray | None = None,
        short_regression: bool = True,
        short_memory_s: float = 60.0,
        lowpass_hz: float | None = 0.5,
        highpass_hz: float | None = None,
        sci_window_s: float = 5.0,
        jump_od: float = DEFAULT_JUMP_OD,
        jump_lag_s: float = DEFAULT_JUMP_LAG_S,
        jump_hold_s: float = 2.0,
    ) -> None:
        """``measure``: what the stream sends, 'intensity' (CW amplitude) or 'od' (optical density).
        ``reference``: one reference intensity per STREAM column (only the layout's are used), e.g. a
        calibration's mean; None: learnt over the first ``reference_s`` seconds."""
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"sampling rate must be > 0 Hz, got {fs}")
        self.layout = layout
        self.fs = float(fs)
        self._n_cols = layout.n_columns
        cols = layout.columns()  # (2, n_pairs)
        self._cols = cols.ravel()  # OD rows: every pair at wavelength 0, then at wavelength 1
        p = len(layout.pairs)
        self._p = p
        ref = None
        if reference is not None:
            if measure == "od":
                raise ValueError("a reference intensity makes no sense for a stream that sends optical density")
            full = np.asarray(reference, dtype=np.float64)
            if full.shape != (self._n_cols,):
                raise ValueError(f"reference: one value per stream column ({self._n_cols}) expected, got {full.shape}")
            ref = full[self._cols]
        self._od = OpticalDensity(2 * p, self.fs, measure=measure, reference=ref, reference_s=reference_s)
        self._mbll = BeerLambert(mbll_matrices(layout.wavelengths, layout.distances(), ppf, names=layout.names))
        self._sci = ScalpCoupling(p, self.fs, window_s=sci_window_s)
        self._motion = MotionJumps(p, self.fs, threshold_od=jump_od, lag_s=jump_lag_s, hold_s=jump_hold_s)
        self._lowpass = None if lowpass_hz is None else StreamingSOS(haemoglobin_lowpass_sos(self.fs, lowpass_hz), 2 * p)

        is_short = np.array([pair.short for pair in layout.pairs])
        self._long = np.flatnonzero(~is_short)
        self._long_rows = np.concatenate([self._long, self._long + p])
        self._highpass = (None if highpass_hz is None or not self._long.size else
                          StreamingSOS(haemoglobin_highpass_sos(self.fs, highpass_hz), 2 * self._long.size))
        self._short = np.flatnonzero(is_short)
        partner = layout.nearest_short_indices()
        regressed = [i for i in self._long.tolist() if partner[i] >= 0] if short_regression else []
        self._unregressed = tuple(layout.pairs[i].name for i in self._long.tolist() if i not in regressed)
        # Rows of the (2 * n_pairs) HbO/HbR stack: HbO of pair i is row i, HbR row p + i.
        reg = np.asarray(regressed, dtype=np.intp)
        self._reg_y = np.concatenate([reg, reg + p])
        self._reg_x = np.concatenate([partner[reg], partner[reg] + p])
        self._regression = ShortRegression(self._reg_y.size, self.fs, short_memory_s) if reg.size else None

        names = [layout.pairs[i].name for i in self._long.tolist()]
        shorts = [layout.pairs[i].name for i in self._short.tolist()]
        labels: list[str] = []
        types: list[str] = []
        for name in names:
            labels += [f"{name} hbo", f"{name} hbr"]
            types += ["hbo", "hbr"]
        for name in names:
            labels += [f"{name} sci", f"{name} motion"]
            types += ["sci", "motion"]
        for name in shorts:
            labels += [f"{name} hbo", f"{name} hbr"]
            types += ["hbo_short", "hbr_short"]
        self._labels = tuple(labels)
        self._types = tuple(types)

    # ------------------------------------------------------------------ FrontEnd

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def types(self) -> tuple[str, ...]:
        return self._types

    @property
    def unregressed(self) -> tuple[str, ...]:
        """Long pairs whose output is not short-channel corrected (no short pair, or regression off)."""
        return self._unregressed

    @property
    def reference(self) -> np.ndarray:
        """Reference intensity per OD row (pairs at wavelength 0, then at wavelength 1), NaN if unknown."""
        return self._od.reference

    @property
    def reference_frozen(self) -> bool:
        return self._od.reference_frozen

    def reset(self) -> None:
        self._od.reset()
        self._sci.reset()
        self._motion.reset()
        if self._lowpass is not None:
            self._lowpass.reset()
        if self._regression is not None:
            self._regression.reset()
        if self._highpass is not None:
            self._highpass.reset()

    def describe(self) -> str:
        """One line for the operator: the layout and what is corrected."""
        lay = self.layout
        nl, ns = self._long.size, self._short.size
        text = (f"fNIRS {nl} long + {ns} short pairs at {'/'.join(f'{w:g}' for w in lay.wavelengths)} nm -> "
                f"HbO/HbR, sci, motion per long pair")
        if self._unregressed:
            text += f"; without short-channel regression: {', '.join(self._unregressed)}"
        return text

    def process(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(n, n_stream_columns)`` -> ``(n, len(labels))``."""
        if x.ndim != 2 or x.shape[1] != self._n_cols:
            raise ValueError(f"expected a chunk (n, {self._n_cols}), got {x.shape}")
        n = x.shape[0]
        p = self._p
        raw = x.T.take(self._cols, axis=0)  # (2p, n), a new C-contiguous array
        od = self._od.process(raw).reshape(2, p, n)
        sci = self._sci.process(od)
        motion = self._motion.process(od)
        hb = np.ascontiguousarray(self._mbll.process(od).reshape(2 * p, n))  # rows: HbO of every pair, then HbR
        if self._lowpass is not None:
            self._lowpass.process_(hb)
        short_hb = hb[np.concatenate([self._short, self._short + p])] if self._short.size else None
        if self._regression is not None:
            hb[self._reg_y] = self._regression.process(hb[self._reg_y], hb[self._reg_x])
        if self._highpass is not None:
            hb[self._long_rows] = self._highpass.process_(np.ascontiguousarray(hb[self._long_rows]))

        nl, ns = self._long.size, self._short.size
        out = np.empty((n, len(self._labels)))
        out[:, 0:2 * nl:2] = hb[self._long].T
        out[:, 1:2 * nl:2] = hb[self._long + p].T
        out[:, 2 * nl:4 * nl:2] = sci[self._long].T
        out[:, 2 * nl + 1:4 * nl:2] = motion[self._long].T
        if short_hb is not None:
            out[:, 4 * nl::2] = short_hb[:ns].T
            out[:, 4 * nl + 1::2] = short_hb[ns:].T
        return out
