"""Screenshots of the thermometer and the operator panel from a realistic fake fMRI run.

    python -m controller.display.screenshots docs/img

writes ``fmri_thermometer.png`` and ``fmri_operator_panel.png``. The run is synthetic but shaped
like the amygdala protocol: TR 1.97 s, 40 s Rest/Happy/Count blocks, PSC feedback in Happy blocks
only, slow head drift plus one jerk, ~30 ms pipeline per volume after a TR of delivery, one missing volume.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TR_S = 1.97
BLOCK_S = 40.0
CYCLES = 3
T0 = 1000.0  # LSL-clock time of the first block start (arbitrary)


@dataclass
class FakeRun:
    qc: np.ndarray  # (n, 10) in QC channel order
    qc_t: np.ndarray
    feedback: np.ndarray  # (m, 2): value 0..1, raw PSC (%)
    feedback_t: np.ndarray
    markers: list[str]
    markers_t: np.ndarray
    target: float


def _hrf(tr: float) -> np.ndarray:
    t = np.arange(0, 30, tr)
    h = t ** 5 * np.exp(-t) / 120 - t ** 15 * np.exp(-t) / (6 * 1.3e12)
    return h / h.max()


def fake_run(seed: int = 4, psc_range: tuple[float, float] = (0.0, 2.0), target_psc: float = 1.0) -> FakeRun:
    """A fake run (blocks, motion, timing, feedback) with the protocol's engine semantics."""
    rng = np.random.default_rng(seed)
    labels = ["rest"] + ["happy", "count", "rest"] * CYCLES
    starts = T0 + BLOCK_S * np.arange(len(labels))
    end = starts[-1] + BLOCK_S
    markers, markers_t = [], []
    for label, s in zip(labels, starts):
        if markers:
            markers.append(f"block_end:{markers[-1].split(':', 1)[1]}")
            markers_t.append(s)
        markers.append(f"block_start:{label}")
        markers_t.append(s)
    markers.append(f"block_end:{labels[-1]}")
    markers_t.append(end)

    n = int((end - T0) / TR_S)
    t = T0 + TR_S * np.arange(n)
    index = 6 + np.arange(n)  # after 5 skipped volumes
    label_at = np.array(labels)[np.minimum(((t - T0) // BLOCK_S).astype(int), len(labels) - 1)]
    # motion: slow drifts, noise, and a jerk at ~2/3 of the run that partly recovers
    drift = np.linspace(0, 1, n)[:, None] * np.array([0.05, 0.15, 0.35, 0.2, -0.1, 0.05])
    noise = rng.normal(0, 1, (n, 6)) * np.array([0.012, 0.012, 0.02, 0.012, 0.01, 0.01])
    jerk = np.zeros((n, 6))
    j = int(n * 0.62)
    jerk[j:] = np.array([0.45, -0.2, 0.3, 0.5, 0.1, -0.2])
    jerk[j + 1:] *= 0.45
    motion = drift + np.cumsum(noise, axis=0) * 0.3 + noise + jerk
    d = np.abs(np.diff(motion, axis=0, prepend=motion[:1]))
    fd = d[:, :3].sum(1) + 50.0 * np.deg2rad(d[:, 3:]).sum(1)
    proc = 24 + rng.gamma(4.0, 1.6, n)
    proc[j] += 11  # the jerk costs realignment iterations
    delivery = TR_S * 1e3 + rng.normal(0, 3, n)  # a scanner sends a volume once complete: about a TR
    qc = np.column_stack([index, motion, fd, proc, delivery])
    keep = np.ones(n, bool)
    keep[int(n * 0.3)] = False  # one volume never arrived

    # BOLD in the amygdala: up in happy blocks (growing with learning), a little in count
    box = np.select([label_at == "happy", label_at == "count"], [1.0, 0.25], 0.0)
    learn = 0.8 + 0.6 * np.linspace(0, 1, n)
    bold = np.convolve(box * learn, _hrf(TR_S))[:n] * 0.45 + rng.normal(0, 0.2, n)
    psc = np.convolve(bold, np.ones(3) / 3)[:n]  # 3-TR moving average
    fb = (label_at == "happy") & keep
    low, high = psc_range
    value = np.clip((psc - low) / (high - low), 0, 1)
    return FakeRun(qc[keep], t[keep], np.column_stack([value, psc])[fb], t[fb], markers, np.array(markers_t),
                   target=(target_psc - low) / (high - low))


def render(out_dir: Path, seed: int = 4) -> list[Path]:
    """Write the two PNGs into ``out_dir``; returns their paths."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from controller.display.model import PanelState, ThermometerState
    from controller.display.panel import OperatorPanelView
    from controller.display.qt import application
    from controller.display.thermometer import ThermometerView

    app = application()
    run = fake_run(seed)
    out_dir.mkdir(parents=True, exist_ok=True)

    # the thermometer in the middle of the last happy block
    happy_start = run.markers_t[[i for i, m in enumerate(run.markers) if m == "block_start:happy"][-1]]
    upto = run.markers_t <= happy_start + 25
    th = ThermometerState(target=run.target)
    th.on_markers([m for m, k in zip(run.markers, upto) if k], run.markers_t[upto])
    sel = run.feedback_t <= happy_start + 25
    th.on_feedback(run.feedback[sel], run.feedback_t[sel])
    thermo = ThermometerView(th)
    thermo.resize(1024, 768)

    # the panel near the end of the run (last block still running)
    t_cut = run.qc_t[-4]
    ps = PanelState(fd_threshold_mm=0.5)
    ps.target = run.target
    k = run.markers_t <= t_cut
    ps.on_markers([m for m, keep in zip(run.markers, k) if keep], run.markers_t[k])
    k = run.qc_t <= t_cut
    ps.on_qc(run.qc[k], run.qc_t[k])
    k = run.feedback_t <= t_cut
    ps.on_feedback(run.feedback[k], run.feedback_t[k])
    panel = OperatorPanelView(ps)
    panel.resize(1400, 1000)

    paths = []
    for widget, name in ((thermo, "fmri_thermometer.png"), (panel, "fmri_operator_panel.png")):
        widget.show()
        widget.refresh()
        for _ in range(5):
            app.processEvents()
        path = out_dir / name
        if not widget.grab().save(str(path)):
            raise OSError(f"{path}: Qt could not write the PNG")
        paths.append(path)
        widget.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m controller.display.screenshots OUT_DIR", file=sys.stderr)
        return 2
    for path in render(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
