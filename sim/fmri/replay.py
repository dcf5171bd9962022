"""Replay a 4D NIfTI as a scanner would deliver it: one volume per TR (or ``speed`` times faster),
over LSL (docs/lsl_volumes.md) and/or as files appearing in an export folder.

Volume v (0-based) of the file gets acquisition index ``first_index + v`` and is "acquired" at
``t0 + v * TR / speed`` (its LSL timestamp); like a scanner, it is delivered one TR later, when
its reconstruction would be done. ``drop``, ``swap`` and ``duplicate`` produce missing, out-of-order and repeated volumes
for testing readers; ``write_mode="steps"`` writes each file in several appends with pauses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl


@dataclass
class ReplayStats:
    volumes: int = 0
    files: int = 0
    pushed: int = 0


class Run4D:
    """A 4D NIfTI opened once (uncompressed files are memory-mapped, .gz read once)."""

    def __init__(self, path: str | Path, tr_s: float | None = None) -> None:
        import nibabel as nib

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        img = nib.load(str(self.path))
        if len(img.shape) != 4:
            raise ValueError(f"{self.path}: a {len(img.shape)}D image {img.shape}; --replay needs a 4D NIfTI")
        self.shape = tuple(int(n) for n in img.shape[:3])
        self.n_volumes = int(img.shape[3])
        self.affine = np.asarray(img.affine, dtype=float)
        if tr_s is None:
            zoom = float(img.header.get_zooms()[3])
            unit = img.header.get_xyzt_units()[1]
            tr_s = zoom / 1000.0 if unit == "msec" else zoom * 1e-6 if unit == "usec" else zoom
        if not tr_s or tr_s <= 0:
            raise ValueError(f"{self.path}: no TR in the header (pixdim[4] = 0); give --tr")
        self.tr_s = float(tr_s)
        gz = self.path.name.lower().endswith(".gz")
        self._all = np.asarray(img.dataobj) if gz else None
        self._img = img

    def volume(self, v: int) -> np.ndarray:
        if self._all is not None:
            return self._all[..., v]
        return np.asarray(self._img.dataobj[..., v])


def run_fmri_replay(path: str | Path, lsl_name: str | None = None, folder: str | Path | None = None,
                    formats: tuple[str, ...] = ("nifti",), template: str | Path | None = None,
                    speed: float = 1.0, steps: int | None = None, start: int = 0, first_index: int = 1,
                    tr_s: float | None = None, write_mode: str = "atomic", write_steps: int = 3,
                    step_pause_s: float = 0.05, drop: frozenset[int] = frozenset(), swap: frozenset[int] = frozenset(),
                    duplicate: frozenset[int] = frozenset(), wait_consumer_s: float = 0.0, source_id: str | None = None, linger_s: float = 1.0,
                    stop_event: threading.Event | None = None,
                    on_ready: Callable[[dict], None] | None = None,
                    on_volume: Callable[[int, float, float], None] | None = None,
                    start_gate: Callable[[], bool] | None = None) -> ReplayStats:
    """Stream the volumes; returns counts. ``steps``: at most this many volumes; ``start``: 0-based first.

    ``on_volume(index, acquired, written)``: after each volume is out (``written``: LSL clock when
    its files were complete and its sample pushed). ``start_gate()``: called once ready (and after
    ``wait_consumer_s``); the clock starts when it returns True, nothing is sent when it returns False
    (a session's recorder must subscribe before volume 1, sim/fmri/gate.py).
    """
    from sim.fmri.folder_out import make_writer
    from sim.fmri.lsl_out import VolumeOutlet

    if lsl_name is None and folder is None:
        raise ValueError("nothing to do: give --lsl NAME and/or --folder DIR")
    run = Run4D(path, tr_s)
    stop = stop_event or threading.Event()
    if not 0 <= start < run.n_volumes:
        raise ValueError(f"--start {start} outside 0..{run.n_volumes - 1} ({path})")
    last = run.n_volumes if steps is None else min(run.n_volumes, start + steps)
    order = list(range(start, last))
    for idx in sorted(swap):  # swap volume idx with idx+1 (indices are acquisition numbers)
        v = idx - first_index
        if start <= v < last - 1:
            a, b = order.index(v), order.index(v + 1)
            order[a], order[b] = order[b], order[a]
    writers = []
    if folder is not None:
        for fmt in formats:
            writers.append(make_writer(folder, fmt, mode=write_mode, affine=run.affine, shape=run.shape,
                                       tr_s=run.tr_s, template=template if fmt in ("dicom", "mosaic") else None,
                                       steps=write_steps, step_pause_s=step_pause_s))
    outlet = None
    if lsl_name is not None:
        sid = source_id or f"neuroreflex-sim-fmri-replay:{lsl_name}:{run.path.name}"
        outlet = VolumeOutlet(lsl_name, run.shape, run.affine, run.tr_s, sid, first_index=first_index + start,
                              manufacturer="replay", source=run.path.name)
    if on_ready is not None:
        on_ready({"kind": "fmri-replay", "file": str(run.path), "lsl": lsl_name,
                  "folder": str(Path(folder).absolute()) if folder is not None else None,
                  "formats": list(formats) if folder is not None else [], "shape": list(run.shape),
                  "tr_s": run.tr_s, "speed": speed, "volumes": len(order), "first_index": first_index + start,
                  "write_mode": write_mode})
    stats = ReplayStats()
    try:
        if outlet is not None and wait_consumer_s > 0:
            outlet.wait_for_consumers(wait_consumer_s)
        if start_gate is not None and not start_gate():
            return stats
        period = run.tr_s / speed
        t0 = pylsl.local_clock()
        for n, v in enumerate(order):
            index = first_index + v
            acquired = t0 + (v - start) * period
            due = t0 + (n + 1) * period  # delivered when "reconstructed", one TR after its slot
            wait = due - pylsl.local_clock()
            if wait > 0 and stop.wait(wait):
                break
            if stop.is_set():
                break
            if index in drop:
                continue
            data = run.volume(v)
            for _copy in range(2 if index in duplicate else 1):  # a duplicate: the same volume again at once
                for w in writers:
                    w.write(data, index)
                    stats.files += 1
                if outlet is not None:
                    outlet.push(data, index, acquired)
                    stats.pushed += 1
            stats.volumes += 1
            if on_volume is not None:
                on_volume(index, acquired, pylsl.local_clock())
        if outlet is not None and linger_s > 0:  # let receivers drain the last volume before the outlet goes
            stop.wait(linger_s)
    finally:
        if outlet is not None:
            outlet.close()
    return stats
