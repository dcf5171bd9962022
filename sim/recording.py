"""A recording to replay: samples in volts, labels, rate and annotations (file-relative sample numbers).

Why: the replay streamer stamps every sample itself and publishes the annotations (e.g. a
seizure onset) at the exact LSL time of their sample, so it needs the whole recording as
arrays, whatever the file format:

- text archives (``.tar.gz`` / ``.tgz`` / ``.tar``, or a folder): one whitespace-separated
  text file per channel, named after the channel (``c3``, ``cz``, ...), plus a README that
  gives the rate ("100 Hertz") and, for a seizure recording, where the seizure starts ("the
  first half is preseizure while the last half is during seizure": onset = n // 2). Values
  carry no unit; ``unit="auto"`` reads them as microvolts when their spread looks like scalp
  EEG in microvolts (median channel SD 1-2000) and says so in ``notes``;
- everything ``sim.replay.load_recording`` reads (EDF/BDF/FIF/XDF ...): data as MNE holds it
  (volts for EEG), annotations from the file.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEIZURE_ONSET = "seizure_onset"
UNIT_SCALE = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}
TEXT_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_SKIP = re.compile(r"(?i)^(readme|license|script|manifest|copying)|\.(md|m|txt\.bak|py|pdf|csv)$")
_RATE = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*(?:hz|hertz)\b")
_FIRST_HALF = re.compile(r"(?is)first\s+half\W+(?:\w+\W+){0,4}?pre-?\s*(?:seizure|ictal)")
_SECOND_HALF = re.compile(r"(?is)(?:second|last|latter)\s+half\W+(?:\w+\W+){0,4}?(?:seizure|ictal)")


@dataclass(frozen=True)
class Annotation:
    onset_sample: int  # file-relative sample number (0 = first sample of the file)
    label: str
    source: str  # where it came from (README sentence, file annotation, command line)


@dataclass
class Recording:
    data: np.ndarray  # (n_samples, n_channels), float64, in ``units``
    rate: float
    labels: tuple[str, ...]
    units: tuple[str, ...]  # per channel: "volts" or "a.u."
    types: tuple[str, ...]  # per channel, e.g. "EEG"
    source: str
    annotations: list[Annotation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # decisions taken while reading (scale, rate, onset)

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    def annotate(self, label: str, seconds: float, source: str = "command line") -> Annotation:
        """Put an annotation at ``seconds`` from the start of the file (rounded to the nearest sample).

        It replaces annotations of the same label the file's own notes gave (a README's rough
        "first half pre-ictal" split is corrected by the one who knows the onset) and says so."""
        sample = int(round(seconds * self.rate))
        if not 0 <= sample < self.n_samples:
            raise ValueError(f"annotation {label}@{seconds:g}: outside the recording "
                             f"(0-{self.n_samples / self.rate:g} s)")
        note = Annotation(sample, label, source)
        replaced = [a for a in self.annotations if a.label == label and a.source != source]
        for old in replaced:
            self.annotations.remove(old)
            self.notes.append(f"{label} at sample {old.onset_sample} ({old.source}) replaced by sample {sample} "
                              f"({source})")
        self.annotations.append(note)
        self.annotations.sort(key=lambda a: a.onset_sample)
        return note


def channel_label(name: str) -> str:
    """10-20 spelling of a lower-case file name: c3 -> C3, cz -> Cz, fp1 -> Fp1, t5 -> T5."""
    stem = Path(name).stem if Path(name).suffix.lower() in (".txt", ".asc", ".dat") else Path(name).name
    return stem[:1].upper() + stem[1:].lower()


def _read_members(path: Path) -> dict[str, str]:
    """Regular files of a tar archive or folder: {file name: text}."""
    if path.is_dir():
        return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(path.rglob("*")) if p.is_file()}
    texts: dict[str, str] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    texts[Path(member.name).name] = handle.read().decode("utf-8", errors="replace")
    return texts


def _infer_scale(data: np.ndarray, unit: str, notes: list[str]) -> float:
    if unit != "auto":
        if unit not in UNIT_SCALE:
            raise ValueError(f"unit {unit!r} unknown; units: auto, {', '.join(UNIT_SCALE)}")
        notes.append(f"values read as {unit} (given)")
        return UNIT_SCALE[unit]
    sd = float(np.median(data.std(axis=0)))
    if 1.0 <= sd <= 2000.0:
        notes.append(f"values read as microvolts: median channel SD {sd:.3g} (scalp EEG is ~5-100 uV); "
                     f"streamed in volts (x 1e-6)")
        return 1e-6
    if 1e-7 <= sd < 1e-2:
        notes.append(f"values read as volts: median channel SD {sd:.3g}")
        return 1.0
    raise ValueError(f"cannot tell the unit of these values (median channel SD {sd:.3g}); give the unit (uV, mV or V)")


def load_text_archive(path: str | Path, rate: float | None = None, unit: str = "auto") -> Recording:
    """One-text-file-per-channel recording (see the module docstring); volts out."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recording to replay not found: {path}")
    try:
        members = _read_members(path)
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: not a readable tar archive: {exc}") from exc
    readme = "\n".join(text for name, text in members.items() if name.lower().startswith("readme"))
    columns: dict[str, np.ndarray] = {}
    for name, text in members.items():
        if _SKIP.search(name):
            continue
        try:
            values = np.array(text.split(), dtype=np.float64)
        except ValueError:
            continue  # not a channel file
        if values.size:
            columns[name] = values
    if not columns:
        raise ValueError(f"{path}: no channel files (one whitespace-separated column of numbers per file)")
    lengths = {name: v.size for name, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: channel files differ in length: {lengths}")
    order = sorted(columns, key=lambda n: (_position_in(readme, n), n))
    notes: list[str] = []
    if rate is None:
        found = _RATE.search(readme)
        if not found:
            raise ValueError(f"{path}: the README gives no sampling rate; give it (--replay-rate)")
        rate = float(found.group(1))
        notes.append(f"rate {rate:g} Hz from the README ({found.group(0)!r})")
    if not rate > 0:
        raise ValueError(f"{path}: sampling rate must be > 0, got {rate}")
    data = np.stack([columns[n] for n in order], axis=1)
    scale = _infer_scale(data, unit, notes)
    n = data.shape[0]
    rec = Recording(data * scale, float(rate), tuple(channel_label(c) for c in order), ("volts",) * len(order),
                    ("EEG",) * len(order), str(path), notes=notes)
    first, second = _FIRST_HALF.search(readme), _SECOND_HALF.search(readme)
    if first and second:
        source = f"README: {first.group(0).strip()!r} ... {second.group(0).strip()!r}: onset = {n} // 2"
        rec.annotations.append(Annotation(n // 2, SEIZURE_ONSET, " ".join(source.split())))
        notes.append(f"seizure onset at sample {n // 2} ({n // 2 / rate:g} s): {rec.annotations[-1].source}")
    return rec


def _position_in(readme: str, name: str) -> int:
    """Where the README first names this channel (as a whole word); files it does not name go last."""
    found = re.search(rf"(?i)\b{re.escape(name)}\b", readme)
    return found.start() if found else len(readme) + 1


def load_mne_recording(path: str | Path, stream_name: str | None = None) -> Recording:
    """EDF/BDF/FIF/XDF... through ``sim.replay.load_recording``: volts for voltage channels, file annotations kept."""
    from sim.replay import load_recording

    raw = load_recording(path, stream_name)
    volts = 107  # FIFF_UNIT_V
    units = tuple("volts" if ch["unit"] == volts else "a.u." for ch in raw.info["chs"])
    types = tuple(t.upper() for t in raw.get_channel_types())
    rec = Recording(raw.get_data().T, float(raw.info["sfreq"]), tuple(raw.ch_names), units, types, str(path))
    if len(raw.annotations):
        onsets = raw.time_as_index(raw.annotations.onset, use_rounding=True)
        for sample, label in zip(onsets, raw.annotations.description, strict=True):
            if 0 <= sample < rec.n_samples:
                rec.annotations.append(Annotation(int(sample), str(label), "file annotation"))
    return rec


def load_for_replay(path: str | Path, rate: float | None = None, unit: str = "auto",
                    stream_name: str | None = None) -> Recording:
    """A text archive (or folder) of channel files, or anything MNE/pyxdf reads."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recording to replay not found: {path}")
    if path.is_dir() or path.name.lower().endswith(TEXT_ARCHIVE_SUFFIXES):
        return load_text_archive(path, rate=rate, unit=unit)
    if rate is not None or unit != "auto":
        raise ValueError(f"{path}: the file gives its own rate and units; --replay-rate/--replay-unit are for "
                         f"text archives")
    return load_mne_recording(path, stream_name)
