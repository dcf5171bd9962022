"""BOLD responses of the phantom's ROIs: block regressors convolved with a canonical HRF.

Neural drive. Each block label maps to a *condition* by keyword (case-insensitive substring):

=============  =====================================  ===========================================
condition      label keywords                         response (percent signal change, plateau)
=============  =====================================  ===========================================
regulate       happy, recall, regulat, up, train,      amygdala_r 0.4, mpfc 0.3, acc 0.3,
               feedback, nf, transfer, target         insula 0.2; the target ROI gets the
                                                      participant's effort instead (see below)
count          count, control, math                   DLPFC/PPC 0.6, dACC 0.3, insula 0.3,
                                                      PCC/mPFC -0.4, amygdala -0.1
cbt            cbt, strateg, reapprais, cognit        acc 0.6, dacc 0.3, DLPFC 0.4, sgacc -0.3,
                                                      amygdala -0.2
rest           anything else (rest, baseline, ...)    PCC / mPFC 0.15 (default mode at rest)
=============  =====================================  ===========================================

In *regulation* blocks (condition regulate or cbt) the participant's current effort (percent,
:mod:`sim.fmri.participant`) is added to the target ROI's drive; if the target is ``dmn-cen``
the effort raises the DMN-CEN anticorrelation instead.

Networks. A slow latent fluctuation per network (AR(1), ~20 s, 0.25 %) enters all of its
nodes; the CEN latent is ``-c * dmn + sqrt(1 - c^2) * own``, so DMN and CEN anticorrelate with
coupling ``c`` (``baseline_coupling``, raised by the effort when the target is ``dmn-cen``).

HRF. SPM's canonical double gamma (peak 6 s, undershoot 16 s, ratio 1/6, 32 s long),
normalised to unit sum so a sustained drive of 1 % plateaus at 1 %. The drive is sampled
every ``dt`` (TR / 10) and convolved causally, so a live design works the same as a fixed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import gamma

from sim.fmri.phantom import NETWORKS, ROIS

TARGET_NETWORK = "dmn-cen"

CONDITION_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cbt", ("cbt", "strateg", "reapprais", "cognit")),
    ("count", ("count", "control", "math")),
    ("regulate", ("happy", "recall", "regulat", "up", "train", "feedback", "nf", "transfer", "target")),
)
REGULATION_CONDITIONS = frozenset({"regulate", "cbt"})

RESPONSES: dict[str, dict[str, float]] = {
    "regulate": {"amygdala_l": 0.4, "amygdala_r": 0.4, "mpfc": 0.3, "acc": 0.3, "insula_l": 0.2, "insula_r": 0.2},
    "count": {"dlpfc_l": 0.6, "dlpfc_r": 0.6, "ppc_l": 0.6, "ppc_r": 0.6, "dacc": 0.3, "insula_l": 0.3,
              "insula_r": 0.3, "pcc": -0.4, "mpfc": -0.4, "amygdala_l": -0.1, "amygdala_r": -0.1},
    "cbt": {"acc": 0.6, "dacc": 0.3, "dlpfc_l": 0.4, "dlpfc_r": 0.4, "sgacc": -0.3, "amygdala_l": -0.2,
            "amygdala_r": -0.2},
    "rest": {"pcc": 0.15, "mpfc": 0.15},
}


def condition_of(label: str) -> str:
    """The condition a block label stands for (see the module docstring)."""
    low = label.lower()
    for cond, words in CONDITION_KEYWORDS:
        if any(w in low for w in words):
            return cond
    return "rest"


def canonical_hrf(dt: float, length_s: float = 32.0) -> np.ndarray:
    """SPM double-gamma HRF sampled every ``dt`` s from 0, normalised to unit sum."""
    t = np.arange(0.0, length_s, dt)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


@dataclass(frozen=True)
class BoldConfig:
    target: str = "amygdala_l"  # ROI name, or "dmn-cen"
    network_sd: float = 0.25  # percent, SD of each network's latent fluctuation
    network_tau_s: float = 20.0  # its correlation time
    baseline_coupling: float = 0.3  # DMN-CEN anticorrelation without effort (0..1)
    responses: dict[str, dict[str, float]] = field(default_factory=lambda: RESPONSES)
    substeps: int = 10  # drive samples per TR


class BoldGenerator:
    """Streaming ROI BOLD (percent signal change) for one volume per call."""

    def __init__(self, tr_s: float, config: BoldConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or BoldConfig()
        names = [r.name for r in ROIS]
        if cfg.target != TARGET_NETWORK and cfg.target not in names:
            raise ValueError(f"unknown target {cfg.target!r}; choose one of {', '.join(names)} or {TARGET_NETWORK}")
        self.names = names
        self.tr_s = float(tr_s)
        self.dt = self.tr_s / cfg.substeps
        self.hrf = canonical_hrf(self.dt)
        self._hist = np.zeros((len(names), len(self.hrf)))  # most recent drive sample last
        self._kernel = self.hrf[::-1].copy()
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB01D]))
        self._latent = np.zeros(len(NETWORKS) + 1)  # dmn, cen own, salience, (spare)
        self._cond_maps = {c: self._vector(r) for c, r in cfg.responses.items()}
        self._network_rows = {n: np.array([r.network == n for r in ROIS], float) for n in NETWORKS}
        self._target = names.index(cfg.target) if cfg.target in names else None
        self.t_s = 0.0
        self.coupling = cfg.baseline_coupling

    def _vector(self, mapping: dict[str, float]) -> np.ndarray:
        v = np.zeros(len(self.names))
        for name, amp in mapping.items():
            v[self.names.index(name)] = amp
        return v

    def drive(self, label: str, effort: float) -> tuple[np.ndarray, float]:
        """Neural drive (percent per ROI) for a block label and the participant's effort; and the coupling."""
        cond = condition_of(label)
        d = self._cond_maps.get(cond, np.zeros(len(self.names))).copy()
        coupling = self.config.baseline_coupling
        if cond in REGULATION_CONDITIONS:
            if self._target is not None:
                d[self._target] = effort
            else:
                coupling = float(np.clip(coupling + effort, 0.0, 0.95))
        return d, coupling

    def _network_step(self, dt: float, coupling: float) -> np.ndarray:
        """Advance the latent network fluctuations by ``dt``; returns the per-ROI contribution."""
        cfg = self.config
        a = np.exp(-dt / cfg.network_tau_s)
        self._latent = a * self._latent + np.sqrt(1 - a * a) * self._rng.standard_normal(self._latent.shape)
        dmn, cen_own, sal = self._latent[0], self._latent[1], self._latent[2]
        cen = -coupling * dmn + np.sqrt(max(0.0, 1.0 - coupling**2)) * cen_own
        return cfg.network_sd * (self._network_rows["dmn"] * dmn + self._network_rows["cen"] * cen
                                 + self._network_rows["salience"] * sal)

    def step(self, label_at, effort: float) -> tuple[np.ndarray, np.ndarray]:
        """Advance one TR; returns (BOLD percent per ROI at the end of the TR, mean drive over the TR).

        ``label_at(t)`` gives the block label at simulation time ``t`` (seconds since volume 1).
        """
        n = self.config.substeps
        drives = np.empty((len(self.names), n))
        couplings = np.empty(n)
        for s in range(n):  # n = 10 small vector steps per TR
            t = self.t_s + (s + 1) * self.dt
            d, c = self.drive(label_at(t), effort)
            drives[:, s] = d + self._network_step(self.dt, c)
            couplings[s] = c
        self._hist = np.concatenate([self._hist[:, n:], drives], axis=1)
        self.t_s += self.tr_s
        self.coupling = float(couplings.mean())
        return self._hist @ self._kernel, drives.mean(axis=1)


def block_regressor(design, tr_s: float, n_volumes: int, condition: str, substeps: int = 10) -> np.ndarray:
    """Offline reference: the HRF-convolved indicator of ``condition`` blocks at each volume's time.

    Volume k (1-based) is sampled at ``k * TR`` like :meth:`BoldGenerator.step` (end of its TR).
    """
    dt = tr_s / substeps
    t = (np.arange(n_volumes * substeps) + 1) * dt
    box = np.array([condition_of(design.label_at(x)) == condition for x in t], float)
    conv = np.convolve(box, canonical_hrf(dt))[: len(box)]
    return conv[substeps - 1::substeps]
