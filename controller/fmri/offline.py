"""Offline reference of the per-volume feature pipeline, computed on a whole 4D array.

The straightforward route, for checking the incremental online classes to numerical precision:
smooth every volume (if asked) and take ROI means, then a fresh least-squares fit for every n
(:func:`glm.offline_glm`), the spike filter as a plain loop, PSC from block segments, and
``np.corrcoef`` per window; and the whole-brain t-map as a fresh least-squares fit of every voxel
for every n (:func:`offline_tmap`). Nothing here is on the hot path.

A protocol's features are recomputed by :func:`offline_feature_values`: the same stages up to the
detrended ROI series, then each feature's kind's own offline reference
(``VolumeFeatureKind.offline``, found in the feature registry) on the columns of its ROIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from controller.features import registry as feature_registry
from controller.fmri.connectivity import offline_sliding_correlation
from controller.fmri.design import VolumePlace
from controller.fmri.glm import GlmConfig, offline_glm
from controller.fmri.psc import PscConfig, offline_psc, offline_psc_placed
from controller.fmri.rois import Roi
from controller.fmri.smoothing import GaussianSmoother
from controller.fmri.spikes import SpikeConfig, offline_spike_filter
from controller.fmri.tmap import RANK_RTOL, contrast_vector
from controller.lang.compiled import FeatureSpec


@dataclass(frozen=True)
class FeaturePipelineConfig:
    """What the per-volume feature stages do (shared by the online composition and this reference)."""

    glm: GlmConfig = field(default_factory=GlmConfig)
    psc: PscConfig = field(default_factory=PscConfig)
    spike: SpikeConfig | None = None
    smoothing_fwhm_mm: float | None = None
    connectivity: tuple[int, int] | None = None  # indices of the two ROIs to correlate
    connectivity_window: int = 20
    fisher_z: bool = False


@dataclass
class OfflineFeatures:
    """Per-volume arrays, (n_volumes, n_rois) unless noted; NaN where a value does not exist yet."""

    raw: np.ndarray
    cleaned: np.ndarray
    detrended: np.ndarray
    psc: np.ndarray
    feedback: np.ndarray
    connectivity: np.ndarray | None  # (n_volumes,)


def offline_roi_series(data4d: np.ndarray, affine: np.ndarray, rois: Sequence[Roi], smoothing_fwhm_mm: float | None = None) -> np.ndarray:
    """ROI means (n_volumes, n_rois) of each volume, smoothing the whole volume first when asked."""
    smoother = GaussianSmoother.for_affine(smoothing_fwhm_mm, affine) if smoothing_fwhm_mm else None
    out = np.empty((data4d.shape[3], len(rois)))
    for t in range(data4d.shape[3]):
        vol = np.asarray(data4d[..., t], dtype=np.float64)
        if smoother is not None:
            vol = smoother(vol)
        out[t] = [roi.mean_of(vol) for roi in rois]
    return out


def offline_features(
    data4d: np.ndarray,
    affine: np.ndarray,
    rois: Sequence[Roi],
    motion: np.ndarray | None,
    labels: Sequence[str],
    config: FeaturePipelineConfig,
    task: np.ndarray | None = None,
) -> OfflineFeatures:
    """The whole pipeline on ``data4d`` (x, y, z, n) with ``motion`` (n, 6) and one block label per volume.

    ``task`` (n, n_task) holds the task regressors when ``config.glm.n_task`` > 0.

    ``data4d`` should already be realigned (or be the raw volumes when motion is only regressed).
    """
    n = data4d.shape[3]
    if len(labels) != n:
        raise ValueError(f"offline_features: {len(labels)} block labels for {n} volumes")
    raw = offline_roi_series(data4d, affine, rois, config.smoothing_fwhm_mm)
    return offline_features_from_series(raw, motion, labels, config, task)


def offline_features_from_series(
    raw: np.ndarray,
    motion: np.ndarray | None,
    labels: Sequence[str],
    config: FeaturePipelineConfig,
    task: np.ndarray | None = None,
) -> OfflineFeatures:
    """Everything after the ROI means, from the (n, m) raw ROI series."""
    raw = np.asarray(raw, dtype=np.float64).reshape(len(labels), -1)
    resid, detr = _despiked(*offline_glm(raw, motion if config.glm.motion else None, config.glm, task), config)
    psc, fb = offline_psc(detr, labels, config.psc)
    return OfflineFeatures(raw, resid, detr, psc, fb, _connectivity(detr, config))


def _despiked(resid: np.ndarray, detr: np.ndarray, config: FeaturePipelineConfig) -> tuple[np.ndarray, np.ndarray]:
    """The spike filter on the GLM residuals (when configured), the level kept."""
    if config.spike is None:
        return resid, detr
    level = detr - resid
    resid = offline_spike_filter(resid, config.spike)
    return resid, resid + level


def _connectivity(detr: np.ndarray, config: FeaturePipelineConfig) -> np.ndarray | None:
    if config.connectivity is None:
        return None
    a, b = config.connectivity
    return offline_sliding_correlation(detr[:, a], detr[:, b], config.connectivity_window, config.fisher_z)


def offline_features_placed(
    raw: np.ndarray,
    motion: np.ndarray | None,
    places: Sequence[VolumePlace],
    config: FeaturePipelineConfig,
    task_planned: np.ndarray | None = None,
) -> OfflineFeatures:
    """Everything after the ROI means for volumes in ARRIVAL order, each placed by its acquisition
    number (``VolumeDesign.place``): a late start, lost, late or swapped volumes.

    The reference for the online pipeline whatever the scanner and the network did: the GLM's rows sit at
    their acquisition positions (drift) and carry their planned task values (``task_planned``: one row
    per counted volume of the planned run), the PSC baselines and moving average are indexed by
    acquisition; the spike filter and the sliding correlation, filters on the sequence, see arrival order.
    """
    resid, detr = _detrended_placed(raw, motion, places, config, task_planned)
    counted = [p.n for p in places]
    psc, fb = offline_psc_placed(detr, [p.label for p in places],
                                 [p.block.index if p.block is not None else -1 for p in places],
                                 [p.position for p in places], counted, config.psc)
    return OfflineFeatures(np.asarray(raw, dtype=np.float64).reshape(len(places), -1), resid, detr, psc, fb,
                           _connectivity(detr, config))


def _detrended_placed(raw: np.ndarray, motion: np.ndarray | None, places: Sequence[VolumePlace],
                      config: FeaturePipelineConfig, task_planned: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(residuals, detrended) of the (n, m) raw ROI series in arrival order, rows at their acquisition
    positions: the GLM, then the spike filter when configured."""
    n = len(places)
    raw = np.asarray(raw, dtype=np.float64).reshape(n, -1)
    counted = np.array([p.n for p in places])
    if np.any(counted < 0):
        raise ValueError("offline_features_placed: dummy volumes are not part of the features")
    task = None
    if config.glm.n_task:
        if task_planned is None:
            raise ValueError("offline_features_placed: the GLM has task columns; give task_planned")
        tp = np.asarray(task_planned, dtype=np.float64).reshape(-1, config.glm.n_task)
        task = np.array([tp[c] if c < tp.shape[0] else np.zeros(config.glm.n_task) for c in counted])
    return _despiked(*offline_glm(raw, motion if config.glm.motion else None, config.glm, task,
                                  times=counted + 1), config)


def offline_feature_values(
    raw: np.ndarray,
    motion: np.ndarray | None,
    places: Sequence[VolumePlace],
    config: FeaturePipelineConfig,
    features: Sequence[FeatureSpec],
    roi_names: Sequence[str],
    task_planned: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each of ``features`` at every volume (arrival order, placed by acquisition as in
    :func:`offline_features_placed`), NaN where it has no value: the reference of ``VolumePipeline``'s
    feature values. ``raw`` (n, len(roi_names)): the ROI means, one column per name of ``roi_names``;
    ``config``: its GLM and spike stages (the PSC and connectivity settings come from each feature)."""
    _, detr = _detrended_placed(raw, motion, places, config, task_planned)
    return volume_feature_values(detr, roi_names, places, features)


def volume_feature_values(detrended: np.ndarray, roi_names: Sequence[str], places: Sequence[VolumePlace],
                          features: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """Each feature's kind's offline reference on the detrended series (n, len(roi_names)) of its ROIs."""
    detrended = np.asarray(detrended, dtype=np.float64).reshape(len(places), -1)
    columns = {name: k for k, name in enumerate(roi_names)}
    out = {}
    for f in features:
        kind = feature_registry.volume_kind(f.kind)
        out[f.name] = kind.offline(detrended[:, [columns[name] for name in kind.rois(f)]], places, f)
    return out


def offline_tmap(
    series: np.ndarray,
    motion: np.ndarray | None,
    config: GlmConfig,
    task: np.ndarray,
    contrast: np.ndarray | None = None,
) -> list[np.ndarray | None]:
    """Reference of :class:`tmap.IncrementalTmap`: after each volume n, the t-map of a fresh OLS fit of
    ``series`` (n_volumes, V) on volumes 1..n; None where the map is not defined (the same rules).

    Least squares by SVD (``lstsq``) on the design itself, never its normal equations, with the Legendre
    drift over the current window (1..n) rather than the planned run: the t of the task contrast
    depends only on the nuisance columns' span, so agreement also checks that the basis does not matter.
    """
    y = np.asarray(series, dtype=np.float64)
    n_tot = y.shape[0]
    mot = None if motion is None else np.asarray(motion, dtype=np.float64).reshape(n_tot, 6)
    tk = np.asarray(task, dtype=np.float64).reshape(n_tot, -1)
    c_all = contrast_vector(config, contrast)
    out: list[np.ndarray | None] = []
    for n in range(1, n_tot + 1):
        pa = config.active_columns(n)
        c = c_all[:pa]
        x = config.design(np.arange(1, n + 1), None if mot is None else mot[:n], tk[:n], n_scale=max(n, 2))[:, :pa]
        norms = np.linalg.norm(x, axis=0)
        if not np.any(c) or n - pa < 1 or np.any(norms == 0.0):
            out.append(None)
            continue
        sv = np.linalg.svd(x / norms, compute_uv=False)
        if sv[-1] <= RANK_RTOL * sv[0]:
            out.append(None)
            continue
        beta = np.linalg.lstsq(x, y[:n], rcond=None)[0]
        resid = y[:n] - x @ beta
        sigma2 = np.einsum("nv,nv->v", resid, resid) / (n - pa)
        xpinv = np.linalg.pinv(x)
        var_c = float(c @ (xpinv @ xpinv.T) @ c)
        out.append((c @ beta) / np.sqrt(sigma2 * var_c))
    return out
