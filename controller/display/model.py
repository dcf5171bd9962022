"""Qt-free state of the two displays, fed from LSL pulls (or directly by the screenshot script).

Keeping it apart from the widgets makes the displays' logic testable and lets the widgets be
plain renderers of this state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from controller.display.markers import DEFAULT_INSTRUCTIONS, instruction_for, parse_marker, scale_to_bar

# pipeline_ms: arrival -> feedback (the TR budget's); delivery_ms: acquisition -> arrival (NaN: unknown)
QC_CHANNELS = ("index", "tx_mm", "ty_mm", "tz_mm", "rx_deg", "ry_deg", "rz_deg", "fd_mm", "pipeline_ms", "delivery_ms")
PIPELINE, DELIVERY = QC_CHANNELS.index("pipeline_ms"), QC_CHANNELS.index("delivery_ms")


@dataclass
class ThermometerState:
    """What the participant sees: instruction text, and the bar (value, target) in feedback blocks.

    ``feedback_blocks`` names the blocks that show the bar (the protocol's ``feedback.during``);
    when it is None the bar appears in a block once the first feedback value of that block
    arrives (the engine sends feedback only in its feedback blocks), so transfer and rest blocks
    show the instruction alone. ``target_threshold`` + ``feedback_range`` turn
    ``threshold:<name>=<value>`` markers into the target line.
    """

    instructions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_INSTRUCTIONS))
    feedback_blocks: frozenset[str] | None = None
    target: float | None = None  # bar fraction of the target line
    target_threshold: str | None = None
    feedback_range: tuple[float, float] | None = None
    block: str | None = None
    value: float | None = None  # the last feedback value (0..1) in this block
    raw: float | None = None
    updates: int = 0  # feedback values received in total
    _fed_this_block: bool = False
    _block_t: float = -np.inf  # stamp of the current block's start marker
    # the newest feedback value and its stamp: the marker and feedback streams arrive on separate links,
    # so a value acquired in a new block can arrive before that block's start marker
    _last: tuple[float, float, float | None] | None = None

    @property
    def text(self) -> str:
        return instruction_for(self.block, self.instructions)

    @property
    def bar_visible(self) -> bool:
        if self.block is None:
            return False
        if self.feedback_blocks is not None:
            return self.block in self.feedback_blocks
        return self._fed_this_block

    def on_markers(self, texts: Sequence[str], stamps: Sequence[float] | None = None) -> None:
        for i, text in enumerate(texts):
            m = parse_marker(text)
            if m.kind == "block_start":
                self.block, self.value, self.raw, self._fed_this_block = m.label, None, None, False
                self._block_t = float(stamps[i]) if stamps is not None else -np.inf
                if self._last is not None and self._last[0] >= self._block_t:  # it came first, it is this block's
                    _, self.value, self.raw = self._last
                    self._fed_this_block = True
            elif m.kind == "block_end" and m.label == self.block:
                self.block, self.value, self._fed_this_block = None, None, False
            elif m.kind == "target" and m.value is not None:
                self.target = min(1.0, max(0.0, m.value))
            elif (m.kind == "threshold" and m.label == self.target_threshold
                  and self.feedback_range is not None and m.value is not None):
                self.target = scale_to_bar(m.value, *self.feedback_range)

    def on_feedback(self, rows: np.ndarray, stamps: np.ndarray | None = None) -> None:
        """Rows of the feedback stream: (value 0..1, raw feature value); the last one counts.

        Values stamped (acquired) before the current block started belong to the previous block
        and are not shown in this one, even if they arrive after its start marker.
        """
        self.updates += len(rows)
        if stamps is not None and len(rows):
            last = rows[-1]
            self._last = (float(stamps[-1]), float(np.clip(last[0], 0.0, 1.0)),
                          float(last[1]) if rows.shape[1] > 1 else None)
            rows = rows[np.asarray(stamps) >= self._block_t]
        if len(rows) == 0:
            return
        self.value = float(np.clip(rows[-1, 0], 0.0, 1.0))
        self.raw = float(rows[-1, 1]) if rows.shape[1] > 1 else None
        if self.block is not None:
            self._fed_this_block = True


class Series:
    """Rows appended over time with their stamps; amortised O(1) appends, views for plotting."""

    def __init__(self, width: int) -> None:
        self._rows = np.empty((256, width))
        self._t = np.empty(256)
        self.n = 0

    def extend(self, rows: np.ndarray, stamps: np.ndarray) -> None:
        k = len(stamps)
        if k == 0:
            return
        need = self.n + k
        if need > len(self._t):
            cap = max(need, 2 * len(self._t))
            self._rows = np.resize(self._rows, (cap, self._rows.shape[1]))
            self._t = np.resize(self._t, cap)
        self._rows[self.n:need] = rows
        self._t[self.n:need] = stamps
        self.n = need

    @property
    def rows(self) -> np.ndarray:
        return self._rows[:self.n]

    @property
    def t(self) -> np.ndarray:
        return self._t[:self.n]

    def clear(self) -> None:
        self.n = 0


@dataclass
class Block:
    label: str
    start: float
    end: float | None = None  # None while it runs


class PanelState:
    """The operator panel's data: per-volume QC rows, the feedback series, blocks and target."""

    def __init__(self, fd_threshold_mm: float = 0.5, tr_s: float | None = None) -> None:
        self.fd_threshold_mm = fd_threshold_mm
        self.tr_s_option = tr_s
        self.qc = Series(len(QC_CHANNELS))
        self.feedback = Series(2)
        self.blocks: list[Block] = []
        self.target: float | None = None
        self.last_marker: str = ""

    # ------------------------------------------------------------------ feeding
    def on_qc(self, rows: np.ndarray, stamps: np.ndarray) -> None:
        if rows.size and rows.shape[1] != len(QC_CHANNELS):
            raise ValueError(f"fmri-qc stream: {rows.shape[1]} channels, expected {len(QC_CHANNELS)} "
                             f"({', '.join(QC_CHANNELS)})")
        self.qc.extend(rows, stamps)

    def on_feedback(self, rows: np.ndarray, stamps: np.ndarray) -> None:
        self.feedback.extend(rows[:, :2], stamps)

    def on_markers(self, texts: Sequence[str], stamps: np.ndarray) -> None:
        for text, t in zip(texts, stamps):
            m = parse_marker(text)
            if m.kind == "block_start":
                if self.blocks and self.blocks[-1].end is None:
                    self.blocks[-1].end = float(t)
                self.blocks.append(Block(m.label, float(t)))
            elif m.kind == "block_end":
                if self.blocks and self.blocks[-1].end is None and self.blocks[-1].label == m.label:
                    self.blocks[-1].end = float(t)
            elif m.kind == "target" and m.value is not None:
                self.target = min(1.0, max(0.0, m.value))
            else:
                self.last_marker = text

    def clear(self, what: str) -> None:
        """Forget one source's data (``qc``, ``feedback`` or ``markers``) when its session changes."""
        if what == "qc":
            self.qc.clear()
        elif what == "feedback":
            self.feedback.clear()
        else:
            self.blocks.clear()
            self.target = None

    # ------------------------------------------------------------------ derived
    @property
    def t0(self) -> float | None:
        """Time zero of the x axes: the earliest stamp held (blocks, volumes or feedback)."""
        firsts = [s.t[0] for s in (self.qc, self.feedback) if s.n]
        firsts += [self.blocks[0].start] if self.blocks else []
        return min(firsts) if firsts else None

    @property
    def last_time(self) -> float | None:
        lasts = [s.t[-1] for s in (self.qc, self.feedback) if s.n]
        return max(lasts) if lasts else None

    @property
    def last_index(self) -> int | None:
        return int(self.qc.rows[-1, 0]) if self.qc.n else None

    @property
    def missing(self) -> int:
        """Volumes absent between the first and the highest index received (gaps, not duplicates)."""
        if not self.qc.n:
            return 0
        idx = np.unique(self.qc.rows[:, 0].astype(np.int64))
        return int(idx[-1] - idx[0] + 1 - len(idx))

    @property
    def tr_s(self) -> float | None:
        """The TR: the option, else the median stamp step per index step of the QC stream."""
        if self.tr_s_option:
            return self.tr_s_option
        if self.qc.n < 3:
            return None
        di = np.diff(self.qc.rows[:, 0])
        dt = np.diff(self.qc.t)
        ok = di > 0
        return float(np.median(dt[ok] / di[ok])) if ok.any() else None

    @property
    def fd_over(self) -> int:
        return int(np.count_nonzero(self.qc.rows[:, 7] > self.fd_threshold_mm)) if self.qc.n else 0

    def block_position(self) -> tuple[int, str | None]:
        """(number of blocks seen, label of the running block or None)."""
        if not self.blocks:
            return 0, None
        last = self.blocks[-1]
        return len(self.blocks), (last.label if last.end is None else None)
