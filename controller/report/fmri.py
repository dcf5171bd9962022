"""fMRI in a session report: volumes, head motion, time per stage, feature-vs-design fit, motion accuracy.

Read from the journal's ``volume`` events (one per volume the pipeline saw: dummies carry
``dummy: true`` and no motion), ``input`` events with status ``missing`` / ``out_of_order`` /
``duplicate`` (listed as they happened; ``missing`` in the summary counts volumes that never came,
from ``session_end``, not these reports), the fMRI ``feature`` events (matched to their volume by ``sample_index`` = the
volume's acquisition number, else by source time), ``session_start``'s ``fmri`` part (TR, skip,
grid, run) and the protocol copy (which blocks are "on", which features are fMRI features, what
the realignment reference is). When the simulator left its ground truth in the session
(``scanner/*truth*.tsv``), the realignment estimates are compared with it.

Everything is indexed by volume (acquisition number), not by arrival time: a scanner runs on its
own clock, and that is how the pipeline assigns blocks too (controller/fmri/design.py).

Definitions (printed in the report):

- FD = framewise displacement (Power et al. 2012, 50 mm sphere) as the pipeline computed it;
- a volume's time in the stages it is (controller/inputs/volumes/timing.py): ``acquisition_to_arrival``
  (delivery: the scanner's and the transport's; known only when the source knows the acquisition
  time, an LSL timestamp; a folder's is unknown and left out, never guessed), ``arrival_to_feedback``
  (the pipeline: the volume reached the controller -> its feature values handed to the engine; the
  TR budget applies to it) and ``total`` (their sum, when delivery is known). The pipeline's own
  stages: ``read`` = arrival to fully read, realign, roi, glm, features; ``other`` = arrival_to_feedback
  minus the named stages (queueing, the reference volume's set-up, engine hand-over); fraction of TR =
  median arrival_to_feedback / TR, and also / the measured spacing of the acquisitions (shorter than
  the TR when a simulation or replay runs faster than real time);
- design fit = Pearson correlation, over the volumes where the feature has a value, of the
  feature with the "on" blocks' boxcar (per counted volume, block by acquisition number)
  convolved with the canonical double-gamma HRF (controller/fmri/hrf.py); "on" = the feedback's
  ``during`` labels in the protocol copy, else every label but the baselines;
- motion accuracy: the truth gives the head's motion relative to volume 1, realignment estimates
  it relative to the reference (the first volume processed, normally counted volume 0), so the
  expected estimate of volume k is ``T_k @ inv(T_ref)`` (controller/fmri/motion.py convention,
  shared by sim/fmri/motion.py);
  error = estimate - expected, per parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.event_records import Feature, FmriInputStart, FmriStart, VolumeQC
from controller.features import registry as feature_registry
from controller.fmri.design import VolumeDesign
from controller.fmri.hrf import canonical_hrf
from controller.fmri.motion import RigidMotion
from controller.inputs.volumes.timing import ACQUISITION_TO_ARRIVAL, ARRIVAL_TO_FEEDBACK, PIPELINE_STAGES, TOTAL
from controller.lang.compiled import Protocol
from controller.report.data import SessionData

STAGES = PIPELINE_STAGES  # in pipeline order; 'other' and the latency stages apart
LATENCY = (ARRIVAL_TO_FEEDBACK, ACQUISITION_TO_ARRIVAL, TOTAL)  # pipeline, delivery, their sum
FD_LIMIT_MM = 0.5
MOTION_NAMES = ("tx", "ty", "tz", "rx", "ry", "rz")
NON_TASK_LABELS = ("baseline", "rest", "fixation", "null")
TRUTH_GLOB = "*truth*.tsv"
TRUTH_DIRS = ("scanner", ".")
ISSUE_STATUSES = ("missing", "out_of_order", "duplicate", "joined", "existing")
DEFINITION = (
    "FD = framewise displacement (Power et al. 2012, 50 mm sphere); a volume's time is two stages: "
    "acquisition_to_arrival (delivery, the scanner's and the transport's; unknown when the source does not know "
    "the acquisition time, e.g. a folder) and arrival_to_feedback (the pipeline: the volume reached the "
    "controller -> its feature values handed to the engine; the TR budget applies to it); total = their sum; "
    "read = arrival to fully read; other = arrival_to_feedback - the pipeline's named stages; "
    "fraction of TR = median arrival_to_feedback / TR (and / the measured acquisition spacing); design fit r = Pearson "
    "correlation of the feature (per volume) with the "
    "'on' blocks' boxcar (block by acquisition number) convolved with the canonical double-gamma HRF; motion "
    "error = realignment estimate - truth re-expressed relative to the reference volume (T_k inv(T_ref))"
)


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass
class FmriSession:
    """One fMRI input's volumes, in acquisition order (sorted by index)."""

    input: str
    tr_s: float | None
    skip: int | None
    run: str | None
    shape: list[int] | None
    source: Any
    index: np.ndarray  # (n,) acquisition numbers of processed (non-dummy) volumes
    counted: np.ndarray  # (n,) position after the dummies
    block: list[str | None]  # (n,) block label by acquisition number
    motion: np.ndarray  # (n, 6) tx ty tz (mm) rx ry rz (deg)
    fd: np.ndarray  # (n,) mm
    timing: dict[str, np.ndarray]  # stage -> (n,) ms (NaN where absent/unknown); includes 'other' and LATENCY
    rois: dict[str, dict[str, np.ndarray]]  # roi -> raw / detrended -> (n,)
    acquired: np.ndarray  # (n,) LSL s
    dummies: int
    issues: dict[str, list[dict[str, Any]]]  # missing / out_of_order / duplicate -> [{t_s, detail}]
    never_received: list[int]  # acquisition indices of volumes that never came (late ones came: not here)
    features: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (volume index, value)
    on_labels: list[str]
    on_from: str
    reference_index: int | None
    reference: str | None  # the protocol's reference ('first' or a template path); None: unknown
    acquisition_time: str | None = None  # what the journal said: known (and from where) / unknown / mixed
    design_labels: list[str | None] = field(default_factory=list)  # per counted volume 0..last
    truth: dict[str, np.ndarray] | None = None
    truth_file: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def first_counted_index(self) -> int | None:
        """Acquisition number of counted volume 0 (the design's start)."""
        if not self.index.size:
            return None
        return int(self.index[0] - self.counted[0])


# ---------------------------------------------------------------------------- reading


def _input_of(volume: VolumeQC) -> str:
    return volume.input or "fmri"  # journals before the input was named had one, 'fmri'


def _roi(volume: VolumeQC, roi: str, kind: str) -> float:
    """One ROI's raw or detrended mean in a volume (NaN when the volume does not have that ROI)."""
    values = (volume.rois or {}).get(roi)
    return math.nan if values is None else (values.raw if kind == "raw" else values.detrended)


def _on_labels(protocol: Protocol | None, labels: set[str]) -> tuple[list[str], str]:
    """Which block labels are 'on' in the design, and where that came from."""
    if protocol is not None and protocol.feedback is not None and protocol.feedback.during:
        return sorted(protocol.feedback.during), "the feedback's 'during' labels (protocol copy)"
    baselines = set(NON_TASK_LABELS)
    if protocol is not None:
        kinds = feature_registry.volume_kinds()
        baselines |= {label for f in protocol.features.values() if f.kind in kinds
                      for label in kinds[f.kind].baselines(f)}
        labels = labels | {b.label for b in protocol.timeline}
    return sorted(labels - baselines), "every block label but the baselines (" + ", ".join(sorted(baselines)) + ")"


def _fmri_feature_names(data: SessionData, protocol: Protocol | None, input_name: str,
                        acquired: set[float]) -> list[str]:
    if protocol is not None:
        kinds = feature_registry.volume_kinds()
        names = [f.name for f in protocol.features.values() if f.kind in kinds and f.input == input_name]
        if names:
            return [n for n in names if n in data.features]
    # no protocol copy: the features all of whose source times are volume acquisition times
    return sorted(n for n, s in data.features.items() if s.t.size and acquired and set(s.t.tolist()) <= acquired)


def _feature_points(data: SessionData, names: list[str], by_time: dict[float, int]) -> dict[str, tuple[np.ndarray,
                                                                                                           np.ndarray]]:
    """(volume index, value) per feature, from the journal's feature events (sample_index, else source time)."""
    pts: dict[str, list[tuple[int, float]]] = {n: [] for n in names}
    for e in data.journal.of(Feature):
        f = e.record
        if f.name not in pts:
            continue
        idx = f.sample_index if f.sample_index is not None else by_time.get(_num(e.t_source))
        if idx is not None:
            pts[f.name].append((idx, f.value))
    out = {}
    for name, p in pts.items():
        p.sort(key=lambda x: x[0])
        out[name] = (np.array([x[0] for x in p], dtype=int), np.array([x[1] for x in p], dtype=float))
    return out


def find_truth(session_dir: Path) -> Path | None:
    """The simulator's ground-truth TSV in the session folder (``scanner/*truth*.tsv``), if any."""
    for sub in TRUTH_DIRS:
        found = sorted((session_dir / sub).glob(TRUTH_GLOB))
        if found:
            return found[0]
    return None


def read_truth(path: Path) -> dict[str, np.ndarray]:
    """Columns of a tab-separated truth file; needs ``index`` and the six motion columns."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty truth file")
    header = lines[0].split("\t")
    need = ("index", *MOTION_NAMES)
    absent = [c for c in need if c not in header]
    if absent:
        raise ValueError(f"{path}:1: truth file lacks column(s) {', '.join(absent)} (has {', '.join(header)})")
    cols: dict[str, list[float]] = {c: [] for c in need}
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) < len(header):
            continue  # a row being written when the session ended
        for c in need:
            try:
                cols[c].append(float(fields[header.index(c)]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: column {c!r} is not a number: {fields[header.index(c)]!r}") \
                    from None
    return {c: np.array(v) for c, v in cols.items()}


def acquisition_spacing(index: np.ndarray, acquired: np.ndarray) -> float | None:
    """Median LSL seconds between consecutive acquisitions (the TR as it ran: TR / speed in a fast replay)."""
    if index.size < 2:
        return None
    steps = np.diff(acquired) / np.maximum(np.diff(index), 1)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.median(steps)) if steps.size else None


def _timing(done: list[VolumeQC], problems: list[str]) -> tuple[dict[str, np.ndarray], str | None]:
    """Per-volume ms of the pipeline's stages, 'other', then the latency stages; and what the journal said
    about the acquisition time (one phrase, 'mixed', or None when it said nothing)."""
    tims = [d.timing_ms or {} for d in done]
    keys = [k for k in STAGES if any(k in t for t in tims)]
    keys += sorted({k for t in tims for k in t} - set(STAGES) - set(LATENCY) - {"pipeline", "other"})
    timing = {k: np.array([_num(d.stage_ms(k)) for d in done]) for k in keys}
    for k in LATENCY:
        timing[k] = np.array([_num(d.stage_ms(k)) for d in done])
    if tims and not any(ARRIVAL_TO_FEEDBACK in t for t in tims) and any(TOTAL in t for t in tims):
        problems.append("this journal predates the split of a volume's time into delivery and pipeline: its "
                        "'total' counts from the volume's stamp (over LSL the acquisition, so it includes the "
                        "delivery) and is reported as it is, not as the pipeline's time")
    if keys:
        staged = np.nansum(np.vstack([timing[k] for k in keys]), axis=0)
        pipe = timing[ARRIVAL_TO_FEEDBACK]
        timing["other"] = np.where(np.isfinite(pipe), np.maximum(pipe - staged, 0.0), np.nan)
        timing = {**{k: timing[k] for k in keys}, "other": timing["other"], **{k: timing[k] for k in LATENCY}}
    said = {d.acquisition_time for d in done if d.acquisition_time}
    acq = None if not said else (said.pop() if len(said) == 1 else "mixed")
    return timing, acq


def collect(data: SessionData, protocol: Protocol | None) -> FmriSession | None:
    """The session's fMRI volumes, or None when the journal has no volume event (an EEG session)."""
    vols = data.journal.of(VolumeQC)
    if not vols:
        return None
    problems: list[str] = []
    names = list(dict.fromkeys(_input_of(e.record) for e in vols))
    name = names[0]
    if len(names) > 1:
        problems.append(f"volume events of {len(names)} inputs ({', '.join(names)}); only {name!r} is reported")
    start = data.start.fmri or FmriStart()
    spec = start.inputs.get(name) or FmriInputStart()
    rows = [e.record for e in vols if _input_of(e.record) == name]
    dummies = sum(1 for v in rows if v.dummy)
    done = [v for v in rows if v.processed]
    # the pipeline realigns to the first volume it processed (journal order), normally counted volume 0
    ref_index = done[0].index if done else None
    done.sort(key=lambda v: v.index)
    n = len(done)

    index = np.array([v.index for v in done], dtype=int)
    counted = np.array([v.counted if v.counted is not None else -1 for v in done], dtype=int)
    have = counted >= 0
    if n and not have.all():  # an older journal without 'counted': keep the known offset, else count from 0
        counted = index - (int(np.median(index[have] - counted[have])) if have.any() else int(index[0]))
    motion = np.array([(list(v.motion or ()) + [math.nan] * 6)[:6] for v in done], dtype=float).reshape(n, 6)
    fd = np.array([_num(v.fd_mm) for v in done])
    acquired = np.array([_num(v.acquired) for v in done])
    timing, acq_time = _timing(done, problems)
    roi_names = list(dict.fromkeys(r for v in done for r in (v.rois or {})))
    rois = {r: {k: np.array([_roi(v, r, k) for v in done]) for k in ("raw", "detrended")} for r in roi_names}

    issues: dict[str, list[dict[str, Any]]] = {s: [] for s in ISSUE_STATUSES}
    for t, inp, status, detail in data.inputs:
        if inp == name and status in issues:
            issues[status].append({"t_s": t - data.t0, "detail": detail})
    never = never_received(data, name, rows)

    tr = _num(spec.tr_s)
    if not tr > 0 and protocol is not None and name in protocol.volume_inputs:
        tr = protocol.volume_inputs[name].tr_s
    spacing = acquisition_spacing(index, acquired)
    if not tr > 0 and spacing is not None:
        tr = spacing
        problems.append(f"TR not in session_start: {tr:.3f} s estimated from the acquisition times")
    skip = spec.skip
    if skip is None and protocol is not None and name in protocol.volume_inputs:
        skip = protocol.volume_inputs[name].skip
    reference = protocol.volume_inputs[name].reference \
        if protocol is not None and name in protocol.volume_inputs else None

    labels = [v.block for v in done]
    if n and not any(labels) and data.blocks:  # no labels on the volumes: place them in the engine's blocks
        labels = [next((b.label for b in data.blocks if b.t_start <= a < b.t_end), None) for a in acquired]
        problems.append("volume events carry no block label: blocks taken from block_start/block_end times")
    on, on_from = _on_labels(protocol, {x for x in labels if x})
    by_time = {float(a): int(i) for a, i in zip(acquired, index, strict=True) if math.isfinite(a)}
    feats = _fmri_feature_names(data, protocol, name, set(by_time))
    fm = FmriSession(
        input=name, tr_s=tr if tr > 0 else None, skip=skip,
        run=start.run, shape=spec.grid(), source=dict(spec.source) if spec.source is not None else None,
        index=index, counted=counted, block=labels, motion=motion, fd=fd, timing=timing, rois=rois,
        acquired=acquired, dummies=dummies, issues=issues, never_received=never, features=_feature_points(data, feats, by_time),
        on_labels=on, on_from=on_from, reference_index=ref_index,
        reference=reference, problems=problems, acquisition_time=acq_time,
    )
    fm.design_labels = design_labels(fm, protocol)
    path = find_truth(data.session_dir)
    if path is not None:
        try:
            fm.truth, fm.truth_file = read_truth(path), str(path.relative_to(data.session_dir))
        except (OSError, ValueError) as exc:
            problems.append(f"ground truth not used: {exc}")
    return fm


def never_received(data: SessionData, name: str, rows: list[VolumeQC]) -> list[int]:
    """Volumes that never arrived: the session's own count at its end (reported missing and never late, or
    sent by the simulated scanner and lost), else the gaps between the volumes the journal holds.

    Why not the ``missing`` events: one event names a whole gap, and a volume reported missing may
    still arrive (out of order); the report counts volumes, not reports."""
    counted = data.end.missing_volumes(name) if data.end is not None else None
    if counted is not None:
        return counted
    got = {v.index for v in rows}
    return sorted(set(range(min(got), max(got) + 1)) - got) if got else []


# ---------------------------------------------------------------------------- numbers


def stats(values: np.ndarray) -> dict[str, Any]:
    """n, mean, median, p99, max of the finite values (None when there are none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"n": 0, "mean": None, "median": None, "p99": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def design_labels(fm: FmriSession, protocol: Protocol | None = None) -> list[str | None]:
    """Block label of every counted volume 0..last: the volume events' own, and for a volume that never
    came, the protocol timeline's (as the pipeline assigns it), else the label of the volume before it."""
    if not fm.index.size:
        return []
    m = int(fm.counted.max()) + 1
    labels: list[str | None] = [None] * m
    known = [False] * m
    for c, lab in zip(fm.counted.tolist(), fm.block, strict=True):
        if c >= 0:
            labels[c], known[c] = lab, True
    planned = None
    if protocol is not None and protocol.timeline and fm.tr_s:
        planned = VolumeDesign(protocol.timeline, fm.tr_s, 0)
    for c in range(m):
        if not known[c]:
            labels[c] = planned.block_of(c).label if planned is not None and planned.block_of(c) is not None \
                else (labels[c - 1] if c > 0 else None)
    return labels


def design_regressor(fm: FmriSession) -> np.ndarray | None:
    """The 'on' boxcar convolved with the HRF, one value per counted volume 0..last (None without a TR)."""
    if fm.tr_s is None or not fm.design_labels:
        return None
    on = np.array([lab in fm.on_labels for lab in fm.design_labels], dtype=float)
    return np.convolve(on, canonical_hrf(fm.tr_s))[: on.size]


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Correlation of the finite pairs (None with fewer than 3 or a constant series)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return None
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else None


def design_fit(fm: FmriSession) -> dict[str, dict[str, Any]]:
    """Per fMRI feature and per ROI (detrended, raw): correlation with the HRF-convolved design."""
    reg = design_regressor(fm)
    out: dict[str, dict[str, Any]] = {}
    first = fm.first_counted_index
    series = {f"feature {k}": v for k, v in fm.features.items()}
    for roi, s in fm.rois.items():
        for kind in ("detrended", "raw"):
            series[f"roi {roi} ({kind})"] = (fm.index, s[kind])
    for key, (idx, val) in series.items():
        row: dict[str, Any] = {"n": int(np.isfinite(val).sum()), "mean": _opt(float(np.nanmean(val)))
                               if np.isfinite(val).any() else None, "r": None}
        if reg is not None and first is not None and idx.size:
            pos = idx - first
            ok = (pos >= 0) & (pos < reg.size)
            row["r"] = pearson(val[ok], reg[pos[ok]])
        out[key] = row
    return out


def motion_accuracy(fm: FmriSession) -> dict[str, Any] | None:
    """Realignment estimate vs the simulator's truth (None without a truth file)."""
    if fm.truth is None:
        return None
    out: dict[str, Any] = {"truth_file": fm.truth_file, "reference_index": fm.reference_index}
    if fm.reference not in (None, "first"):
        return {**out, "error": f"the reference is a template ({fm.reference}), not a volume of the run: "
                                "its motion relative to the truth is unknown"}
    if fm.reference_index is None:
        return {**out, "error": "no processed volume to be the reference"}
    t = fm.truth
    rows = {int(i): k for k, i in enumerate(t["index"])}
    if fm.reference_index not in rows:
        return {**out, "error": f"the truth has no row for the reference volume {fm.reference_index}"}
    params = np.column_stack([t[c] for c in MOTION_NAMES])
    ref_inv = np.linalg.inv(RigidMotion.from_params6(params[rows[fm.reference_index]]).matrix())
    use = [k for k, i in enumerate(fm.index) if int(i) in rows and np.isfinite(fm.motion[k]).all()]
    if not use:
        return {**out, "error": "no processed volume has a truth row"}
    expected = np.array([RigidMotion.from_matrix(RigidMotion.from_params6(params[rows[int(fm.index[k])]]).matrix()
                                                 @ ref_inv).params6() for k in use])
    err = fm.motion[use] - expected
    trans, rot = np.abs(err[:, :3]), np.abs(err[:, 3:])
    return {**out, "n": len(use),
            "translation_mm": {"mean_abs": float(trans.mean()), "max_abs": float(trans.max())},
            "rotation_deg": {"mean_abs": float(rot.mean()), "max_abs": float(rot.max())},
            "per_axis_mean_abs": dict(zip(MOTION_NAMES, np.abs(err).mean(axis=0).tolist(), strict=True)),
            "per_axis_max_abs": dict(zip(MOTION_NAMES, np.abs(err).max(axis=0).tolist(), strict=True)),
            "expected": expected, "volume_index": fm.index[use]}


def summary(fm: FmriSession | None) -> dict[str, Any] | None:
    """The fMRI part of summary.json (None for a session without volumes)."""
    if fm is None:
        return None
    n = int(fm.index.size)
    span = int(fm.index[-1] - fm.index[0] + 1) if n else 0
    fd = fm.fd
    pipeline = fm.timing.get(ARRIVAL_TO_FEEDBACK, np.array([]))
    pipeline_stats = stats(pipeline)
    delivery = fm.timing.get(ACQUISITION_TO_ARRIVAL, np.array([]))
    spacing = acquisition_spacing(fm.index, fm.acquired)
    acc = motion_accuracy(fm)
    if acc is not None:
        acc = {k: v for k, v in acc.items() if k not in ("expected", "volume_index")}
    fit = design_fit(fm)
    finite_motion = fm.motion[np.isfinite(fm.motion).all(axis=1)] if n else np.zeros((0, 6))
    return {
        "input": fm.input,
        "run": fm.run,
        "tr_s": fm.tr_s,
        "skip": fm.skip,
        "shape": fm.shape,
        "source": fm.source,
        "volumes": {
            "processed": n,
            "dummies": fm.dummies,
            "first_index": int(fm.index[0]) if n else None,
            "last_index": int(fm.index[-1]) if n else None,
            "index_gaps": span - int(np.unique(fm.index).size),
            "missing": len(fm.never_received),
            "missing_indices": fm.never_received,
            "out_of_order": len(fm.issues["out_of_order"]),
            "duplicate": len(fm.issues["duplicate"]),
            "reference_index": fm.reference_index,
            # the session joined a run under way (started late, or its first counted volume was lost)
            "joined": fm.issues["joined"][0]["detail"] if fm.issues["joined"] else None,
            "existing_files": fm.issues["existing"][0]["detail"] if fm.issues["existing"] else None,
        },
        "input_issues": fm.issues,
        "fd_mm": {**stats(fd), "limit_mm": FD_LIMIT_MM, "over_limit": int(np.count_nonzero(fd > FD_LIMIT_MM))},
        "max_abs_translation_mm": float(np.abs(finite_motion[:, :3]).max()) if finite_motion.size else None,
        "max_abs_rotation_deg": float(np.abs(finite_motion[:, 3:]).max()) if finite_motion.size else None,
        "max_abs_motion": dict(zip(MOTION_NAMES, np.abs(finite_motion).max(axis=0).tolist(), strict=True))
        if finite_motion.size else None,
        "timing_ms": {k: stats(v) for k, v in fm.timing.items()},
        "acquisition_time": fm.acquisition_time or ("known" if np.isfinite(delivery).any() else "unknown"),
        "tr_fraction": pipeline_stats["median"] / (fm.tr_s * 1e3)
        if pipeline_stats["median"] is not None and fm.tr_s else None,
        "pipeline_over_tr": int(np.count_nonzero(pipeline[np.isfinite(pipeline)] > fm.tr_s * 1e3))
        if fm.tr_s and pipeline_stats["n"] else None,
        "acquired_tr_s": spacing,
        "acquired_tr_fraction": pipeline_stats["median"] / (spacing * 1e3)
        if pipeline_stats["median"] is not None and spacing else None,
        "design": {"on_labels": fm.on_labels, "from": fm.on_from, "hrf": "canonical double-gamma (SPM shape)"},
        "features": {k[len("feature "):]: v for k, v in fit.items() if k.startswith("feature ")},
        "rois": {r: {"detrended": fit[f"roi {r} (detrended)"], "raw": fit[f"roi {r} (raw)"]} for r in fm.rois},
        "motion_accuracy": acc,
        "definition": DEFINITION,
        "problems": fm.problems,
    }


def stacked_stages(fm: FmriSession) -> list[str]:
    """The timing keys that add up to ``arrival_to_feedback`` (named stages, then ``other``), for the stacked plot."""
    return [k for k in fm.timing if k not in LATENCY]


def block_runs(labels: list[str | None], index: np.ndarray) -> list[tuple[float, float, str]]:
    """(first index - 0.5, last index + 0.5, label) of each run of equal block labels (None left out)."""
    out: list[tuple[float, float, str]] = []
    for k, lab in enumerate(labels):
        if lab is None:
            continue
        if out and out[-1][2] == lab and k > 0 and labels[k - 1] == lab:
            out[-1] = (out[-1][0], float(index[k]) + 0.5, lab)
        else:
            out.append((float(index[k]) - 0.5, float(index[k]) + 0.5, lab))
    return out
