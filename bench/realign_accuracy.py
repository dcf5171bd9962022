"""Realignment accuracy and time per volume for each candidate (prints a table; not a test).

Two sets, both with reference = the template (volume 6) of the real OpenNFT run:
  real  -- the 48 real volumes in order (causal warm start), compared with a careful offline
           registration (full grid, cubic B-spline, converged: ``OfflineRegistration``);
  sim   -- the reference moved by known random rigid motions (each axis uniform in +-2 mm and
           +-2 deg, independent from volume to volume: the hardest case for a warm start),
           resampled by quintic B-spline, plus Gaussian noise at the run's temporal noise level.
SimpleITK (correlation metric, every mask voxel, B-spline, converged) cross-checks the offline
registration on a few volumes. Times are per call of ``estimate`` (no file reading), over
``--passes`` passes of each set; the 2 mm multiband-sized set (104x104x72 made by resampling the
real run) is timed for the chosen candidate only. The chosen candidate is marked with ``*``.
The SimpleITK candidate runs on the first volumes of each set only (0.1-1 s per volume).

    .venv/bin/python bench/realign_accuracy.py [--sim 16] [--passes 3] [--no-sitk]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from controller.fmri.motion import RigidMotion
from controller.fmri.realign import Realigner, brain_mask
from controller.offline.realign import OfflineRegistration, simulate_motion

RUN = Path(__file__).resolve().parents[1] / "../shared/data/fmri/opennft/opennft_psc_run_vols001-048_4d.nii.gz"
REFERENCE_INDEX = 5  # volume 6 (1-based) = the run's template
SITK_VOLUMES = {"real": 12, "sim": 6}  # the SimpleITK candidate is timed on the first few of each set


@dataclass
class Result:
    name: str
    chosen: bool = False
    est: dict[str, list[RigidMotion]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)


def err_stats(est: list[RigidMotion], ref: list[RigidMotion]) -> tuple[float, float, float, float]:
    e = np.abs(np.array([a.params6() - b.params6() for a, b in zip(est, ref)]))
    return e[:, :3].mean(), e[:, :3].max(), e[:, 3:].mean(), e[:, 3:].max()


def run_candidate(
    res: Result,
    set_name: str,
    vols: list[np.ndarray],
    make: Callable[[], Callable[[np.ndarray], RigidMotion]],
    passes: int,
) -> None:
    times: list[float] = []
    est: list[RigidMotion] = []
    for p in range(passes):
        estimate = make()
        out = []
        for v in vols:
            t = time.perf_counter()
            out.append(estimate(v))
            times.append(time.perf_counter() - t)
        if p == 0:
            est = out
    res.est[set_name] = est
    res.times[set_name] = times


def realigner_factory(ref: np.ndarray, affine: np.ndarray, **kw) -> Callable[[], Callable[[np.ndarray], RigidMotion]]:
    def make() -> Callable[[np.ndarray], RigidMotion]:
        return Realigner(ref, affine, **kw).estimate

    return make


def sitk_fast_factory(
    ref: np.ndarray, affine: np.ndarray, mask: np.ndarray
) -> Callable[[], Callable[[np.ndarray], RigidMotion]]:
    from controller.offline.realign_sitk import sitk_register

    def make() -> Callable[[np.ndarray], RigidMotion]:
        state = {"prev": None}

        def estimate(v: np.ndarray) -> RigidMotion:
            m = sitk_register(ref, v, affine, mask, init=state["prev"], fast=True, learning_rate=0.2)
            state["prev"] = m
            return m

        return estimate

    return make


def multiband_set(data: np.ndarray, affine: np.ndarray, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Volumes on a ~2 mm 104x104x72 grid covering the same field of view (trilinear upsampling)."""
    shape = np.array([104, 104, 72])
    scale = np.array(data.shape[:3]) / shape
    grid = np.diag(np.append(scale, 1.0))
    grid[:3, 3] = 0.5 * scale - 0.5  # new voxel centres at the same field of view
    new_affine = affine @ grid
    vols = [
        ndimage.affine_transform(data[..., k], scale, offset=grid[:3, 3], output_shape=tuple(shape), order=1).astype(
            np.float32
        )
        for k in range(n)
    ]
    return vols, new_affine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim", type=int, default=16, help="volumes with simulated motion")
    ap.add_argument("--passes", type=int, default=3, help="timing passes over each set")
    ap.add_argument("--no-sitk", action="store_true", help="skip the SimpleITK candidate and cross-check")
    args = ap.parse_args()
    if not RUN.exists():
        sys.exit(f"real run not found: {RUN}")
    t_start = time.perf_counter()
    img = nib.load(str(RUN))
    data = np.asarray(img.dataobj).astype(np.float32)
    affine = img.affine
    ref = data[..., REFERENCE_INDEX]
    mask = brain_mask(ref)
    real = [data[..., k] for k in range(data.shape[3])]
    # the run's temporal noise: median voxel std of successive differences / sqrt(2)
    noise_sd = float(np.median(np.diff(data[mask], axis=1).std(axis=1)) / np.sqrt(2))
    rng = np.random.default_rng(20261122)
    truth = [RigidMotion(rng.uniform(-2, 2, 3), np.deg2rad(rng.uniform(-2, 2, 3))) for _ in range(args.sim)]
    sim = [simulate_motion(ref, affine, m, noise_sd, rng) for m in truth]

    offline = OfflineRegistration(ref, affine)
    t = time.perf_counter()
    off = {"real": [offline.register(v) for v in real], "sim": [offline.register(v) for v in sim]}
    t_off = (time.perf_counter() - t) / (len(real) + len(sim))
    sets = {"real": real, "sim": sim}

    cands = [
        Result("gn-ic cubic-spline, 50% pts", chosen=True),
        Result("gn-ic cubic-spline, all pts"),
        Result("gn-ic trilinear, all pts"),
    ]
    makers = [
        realigner_factory(ref, affine),
        realigner_factory(ref, affine, keep_fraction=1.0),
        realigner_factory(ref, affine, keep_fraction=1.0, interp="linear"),
    ]
    if not args.no_sitk:
        try:
            makers.append(sitk_fast_factory(ref, affine, mask))
            cands.append(Result(f"simpleitk lin 10% (first {SITK_VOLUMES['real']}/{SITK_VOLUMES['sim']})"))
        except ImportError as e:
            print(f"(SimpleITK candidate skipped: {e})")
    for res, make in zip(cands, makers):
        for name, vols in sets.items():
            if res.name.startswith("simpleitk"):  # 0.1-1 s per volume: a prefix of each set, one pass
                run_candidate(res, name, vols[: SITK_VOLUMES[name]], make, 1)
            else:
                run_candidate(res, name, vols, make, args.passes)

    print(
        f"reference = volume {REFERENCE_INDEX + 1}; noise sd {noise_sd:.2f} (mean in mask {ref[mask].mean():.0f}); "
        f"{len(real)} real, {len(sim)} simulated volumes (+-2 mm / +-2 deg per axis); "
        f"careful offline registration {t_off:.2f} s/volume; cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    )
    hdr = (
        f"{'set':5} {'candidate':30} {'vs truth mm mean/max':>21} {'deg mean/max':>14} "
        f"{'vs offline mm mean/max':>23} {'deg mean/max':>14} {'ms median':>9} {'p99':>6} {'max':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    for name in sets:
        for res in cands:
            est = res.est[name]
            tt = np.array(res.times[name]) * 1e3
            if name == "sim":
                a = err_stats(est, truth)
                vs_truth = f"{a[0]:9.4f}/{a[1]:.4f} {a[2]:7.4f}/{a[3]:.4f}"
            else:
                vs_truth = f"{'-':>21} {'-':>14}"
            b = err_stats(est, off[name])
            mark = "*" if res.chosen else " "
            print(
                f"{name:5} {mark}{res.name:29} {vs_truth} {b[0]:11.4f}/{b[1]:.4f} {b[2]:7.4f}/{b[3]:.4f} "
                f"{np.median(tt):9.2f} {np.percentile(tt, 99):6.2f} {tt.max():6.2f}"
            )
        if name == "sim":
            a = err_stats(off["sim"], truth)
            print(f"{name:5}  {'careful offline (reference)':29} {a[0]:9.4f}/{a[1]:.4f} {a[2]:7.4f}/{a[3]:.4f}")

    if not args.no_sitk:
        try:
            from controller.offline.realign_sitk import sitk_register

            pick = {"real": [len(real) - 1], "sim": [0]}
            for name, idx in pick.items():
                for i in idx:
                    s = sitk_register(ref, sets[name][i], affine, mask, init=off[name][i], learning_rate=0.05)
                    d = np.abs(s.params6() - off[name][i].params6())
                    extra = ""
                    if name == "sim":
                        dt = np.abs(s.params6() - truth[i].params6())
                        extra = f"; SimpleITK vs truth max {dt[:3].max():.4f} mm {dt[3:].max():.4f} deg"
                    print(
                        f"cross-check {name} volume {i}: SimpleITK (careful) vs offline max {d[:3].max():.4f} mm "
                        f"{d[3:].max():.4f} deg{extra}"
                    )
        except ImportError as e:
            print(f"(SimpleITK cross-check skipped: {e})")

    mb, mb_affine = multiband_set(data, affine, 12)
    mb_ref = mb[REFERENCE_INDEX]
    t = time.perf_counter()
    r = Realigner(mb_ref, mb_affine)
    t_init = time.perf_counter() - t
    mb_truth = [RigidMotion(rng.uniform(-1, 1, 3), np.deg2rad(rng.uniform(-1, 1, 3))) for _ in range(4)]
    mb_sim = [simulate_motion(mb_ref, mb_affine, m, noise_sd, rng, order=3) for m in mb_truth]
    tt = []
    for _ in range(args.passes):
        r.reset()
        for v in mb + mb_sim:
            t = time.perf_counter()
            r.estimate(v)
            tt.append((time.perf_counter() - t) * 1e3)
    est = [r.estimate(v) for v in mb_sim]
    e = err_stats(est, mb_truth)
    tt = np.array(tt)
    print(
        f"multiband-sized 104x104x72 (2.1x2.1x1.9 mm), chosen candidate, {r.n_points} points, init {t_init * 1e3:.0f} ms: "
        f"median {np.median(tt):.2f} ms, p99 {np.percentile(tt, 99):.2f}, max {tt.max():.2f}; "
        f"simulated +-1 mm/deg: max error {e[1]:.4f} mm {e[3]:.4f} deg"
    )
    print(f"total bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
