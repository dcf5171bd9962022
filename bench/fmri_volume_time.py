"""Per-volume processing time of real-time fMRI: file appears -> feedback value out.

A writer thread drops volumes of the real OpenNFT run (74x74x36, ../shared/data/fmri/opennft)
into a watched folder the way a scanner export does (written elsewhere, then renamed in), one
every ``--period`` seconds; the session's own folder source (inotify) reads each one and the
session's own per-volume pipeline (realign -> ROI -> cumulative GLM -> PSC) computes the
feedback. The same is done for a 2 mm multiband-sized grid (104x104x72, the real run resampled).

Printed per grid and file format: median, p99 and max of each stage and of the total, and the
ratio of the total to a baseline measured in the same run: the bare hop (file appears -> volume
read into memory, no processing). For scale (from the issue, not measured here): pyOpenNFT
takes a median of 219 ms per volume on this kind of machine, MATLAB OpenNFT about 320 ms.

    python bench/fmri_volume_time.py [--volumes 60] [--period 0.25] [--grids real,mb] [--formats nifti,mosaic]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.clock import now  # noqa: E402
from controller.fmri.pipeline import VolumePipeline  # noqa: E402
from controller.inputs.source import Callbacks  # noqa: E402
from controller.inputs.volumes.watch_folder import FolderSource  # noqa: E402
from controller.protocol import loads_protocol  # noqa: E402
from sim.fmri.folder_out import MosaicTemplate, nifti_bytes, synth_mosaic_dataset  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = DATA / "opennft_psc_run_vols001-048_4d.nii.gz"
MOSAIC = DATA / "001_000007_000006.dcm"
TR = 1.97

PROTOCOL = """
protocol: bench-fmri
inputs:
  fmri:
    volumes: {{folder: {folder}, pattern: "{pattern}"}}
    tr: 1.97 s
    detrend: {{drift: 2, motion: true}}
rois:
  lroi: {{mask: {mask}}}
features:
  psc: {{roi_psc: {{input: fmri, roi: lroi, baseline: baseline, average: 3 TR}}}}
timeline:
  - repeat: 20
    blocks: [{{baseline: 19.7 s}}, {{nf: 19.7 s}}]
feedback: {{value: psc, range: [0 %, 2 %], during: nf}}
"""


def _stats(values: list[float]) -> str:
    a = np.asarray(values)
    return f"{np.median(a):7.2f} {np.percentile(a, 99):7.2f} {a.max():7.2f}"


def load_grid(kind: str, work: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """The run's volumes (x, y, z, t) float32, affine and an ROI mask file on that grid."""
    img = nib.load(str(RUN))
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask_img = nib.load(str(DATA / "lROI_1.nii"))
    if kind == "real":
        return data, img.affine, DATA / "lROI_1.nii"
    target = (104, 104, 72)
    zoom = [t / s for t, s in zip(target, data.shape[:3])]
    out = np.stack([ndimage.zoom(data[..., k], zoom, order=1) for k in range(data.shape[3])], axis=-1)
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] / np.array(zoom)[None, :]
    mask = ndimage.zoom(np.asarray(mask_img.dataobj) > 0, zoom, order=0).astype(np.uint8)
    mask_path = work / "lroi_mb.nii"
    nib.save(nib.Nifti1Image(mask, affine), str(mask_path))
    return out.astype(np.float32), affine, mask_path


def run_case(data: np.ndarray, affine: np.ndarray, mask: Path, fmt: str, n_volumes: int, period: float,
             with_pipeline: bool, work: Path) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(dir=work))
    staging = Path(tempfile.mkdtemp(dir=work))
    pattern = "*.dcm" if fmt == "mosaic" else "*.nii"
    text = PROTOCOL.format(folder=folder, pattern=pattern, mask=mask)
    protocol = loads_protocol(text, str(work / "bench.yaml"))
    spec = protocol.volume_inputs["fmri"]
    pipeline = VolumePipeline(spec, list(protocol.features.values()), protocol.rois, protocol.timeline,
                              feedback_blocks=("nf",))
    template = None
    if fmt == "mosaic":
        template = (MosaicTemplate(MOSAIC) if data.shape[:3] == (74, 74, 36)  # the run's own header
                    else MosaicTemplate(dataset=synth_mosaic_dataset(data.shape[:3], affine, TR)))
    appeared: dict[int, float] = {}
    out: dict[str, list[float]] = {k: [] for k in ("detect", "read", "realign", "roi", "glm", "features", "total")}
    done = threading.Event()

    def on_volume(volume) -> None:
        t_in = now()
        if with_pipeline:
            result = pipeline.push(volume)
            t_out = now()
            timing = result.qc.timing_ms or {}
            for k in ("realign", "roi", "glm", "features"):
                if k in timing:
                    out[k].append(timing[k])
        else:
            t_out = t_in
        t0 = appeared.get(volume.index)
        if t0 is not None and volume.index > 2:  # the reference volume builds the ROIs and the realigner once
            out["detect"].append(1e3 * (volume.received_at - t0))
            out["read"].append(1e3 * (volume.arrived - volume.received_at))
            out["total"].append(1e3 * (t_out - t0))
        if volume.index >= n_volumes:
            done.set()

    source = FolderSource("fmri", folder, Callbacks(on_volume, lambda s, d: None), stall_timeout_s=60, pattern=pattern,
                          tr_s=TR)
    source.open(5)
    source.start()
    time.sleep(0.2)
    for k in range(1, n_volumes + 1):
        vol = data[..., (k - 1) % data.shape[3]]
        if template is not None:
            raw = template.encode(vol, k)
            name = f"001_000007_{k:06d}.dcm"
        else:
            raw = nifti_bytes(vol, affine, TR)
            name = f"vol_{k:06d}.nii"
        tmp = staging / name
        tmp.write_bytes(raw)
        appeared[k] = now()  # just before the rename: the source may see the file before this thread runs again
        tmp.rename(folder / name)
        time.sleep(period)
    done.wait(30)
    source.stop()
    source.join(5)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", type=int, default=60)
    ap.add_argument("--period", type=float, default=0.25, help="seconds between volumes (faster than the TR)")
    ap.add_argument("--grids", default="real,mb")
    ap.add_argument("--formats", default="nifti,mosaic")
    args = ap.parse_args(argv)
    if not RUN.exists():
        print(f"needs the real run: {RUN} (../shared/data beside the repository)", file=sys.stderr)
        return 2
    print(f"fMRI per-volume time, file appears -> feedback out ({args.volumes} volumes per case, one every "
          f"{args.period:g} s; ms)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for grid in args.grids.split(","):
            data, affine, mask = load_grid(grid, work)
            shape = "x".join(map(str, data.shape[:3]))
            for fmt in args.formats.split(","):
                bare = run_case(data, affine, mask, fmt, args.volumes, args.period, False, work)
                full = run_case(data, affine, mask, fmt, args.volumes, args.period, True, work)
                print(f"\n{shape} {fmt}: stage       median     p99     max")
                print(f"  baseline: appear -> read  {_stats(bare['total'])}   (bare hop, no processing)")
                for k in ("detect", "read", "realign", "roi", "glm", "features", "total"):
                    if full[k]:
                        print(f"  {k:<24}{_stats(full[k])}")
                ratio = np.median(full["total"]) / max(1e-9, np.median(bare["total"]))
                print(f"  total / baseline (median): {ratio:.1f}x; TR used: "
                      f"{np.median(full['total']) / (1e3 * TR):.1%} of {TR:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
