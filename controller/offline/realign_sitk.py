"""Independent cross-check of the realignment with SimpleITK (test/bench only; not a runtime dependency).

SimpleITK works in LPS physical space with arrays in (k, j, i) order; this module converts to
and from the NIfTI RAS+ convention of :mod:`controller.fmri.motion` so its answer can be compared
parameter by parameter with :class:`~controller.fmri.realign.Realigner`.
"""

from __future__ import annotations

import numpy as np

from controller.fmri.motion import RigidMotion

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _image(sitk, data: np.ndarray, affine: np.ndarray):
    a = _LPS @ np.asarray(affine, dtype=float)
    spacing = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, dtype=np.float32).transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in a[:3, 3]])
    img.SetDirection([float(x) for x in (a[:3, :3] / spacing).reshape(-1)])
    return img


def sitk_register(
    reference: np.ndarray,
    volume: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
    init: RigidMotion | None = None,
    iterations: int = 300,
    learning_rate: float = 0.5,
    fast: bool = False,
) -> RigidMotion:
    """Rigid registration of ``volume`` to ``reference`` by SimpleITK: correlation metric over every
    mask voxel, cubic B-spline interpolation, single resolution, run to a 1e-6 step.

    ``fast=True`` is the configuration one would try on the hot path instead: linear
    interpolation, 10% random sampling, 1e-3 minimum step (bench only)."""
    try:
        import SimpleITK as sitk
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("SimpleITK is needed for this cross-check: pip install 'neuroreflex[test]'") from e
    fixed = _image(sitk, reference, affine)
    moving = _image(sitk, volume, affine)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    if fast:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.1, seed=1)
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
    if mask is not None:
        m = _image(sitk, mask.astype(np.float32), affine)
        reg.SetMetricFixedMask(sitk.Cast(m, sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear if fast else sitk.sitkBSpline)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=learning_rate,
        minStep=1e-3 if fast else 1e-6,
        numberOfIterations=iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-10,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    tx = sitk.Euler3DTransform()
    tx.SetCenter((0.0, 0.0, 0.0))
    if init is not None:
        m0 = _LPS @ init.matrix() @ _LPS
        tx.SetMatrix([float(x) for x in m0[:3, :3].reshape(-1)])
        tx.SetTranslation([float(x) for x in m0[:3, 3]])
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    m = np.eye(4)
    m[:3, :3] = np.array(tx.GetMatrix()).reshape(3, 3)
    c = np.array(tx.GetCenter())
    m[:3, 3] = np.array(tx.GetTranslation()) + c - m[:3, :3] @ c
    return RigidMotion.from_matrix(_LPS @ m @ _LPS)
