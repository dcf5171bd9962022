"""The protocol engine: timeline, thresholds and rules, driven by feature values.

``on_features`` is the hot path: it runs in the input thread that produced the values
and, before returning, has sent every decision and feedback value to the outputs. All
other parties (journal, display, telemetry) learn what happened from the event bus.

States: idle -> running <-> paused -> stopped; "inhibited" is running with at least one
active inhibition (input stalled, output fault ...): time goes on, no rule fires and no
feedback is sent, and the reasons are published.

Two clocks: events, latencies and the governor use the LSL clock (``clock``); the timeline and
the rules (``for``, refractory, episodes, interlock clearing) run on the signal's clock
(``signal_clock``: the same at speed 1, faster for a replay), so a protocol behaves the same
at any replay speed. A frame belongs to the block its sample was acquired in, not to the
block running when it arrived: a sample stamped before a block began is never judged by it.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from controller import event_records as rec
from controller.clock import now
from controller.engine.conditions import build, names_in
from controller.engine.latency_window import LatencyWindow
from controller.engine.pacing import InterlockState, RulePacing
from controller.engine.ports import FeatureSample, StimulationPort
from controller.engine.signal_clock import SignalClock
from controller.engine.thresholds import ThresholdBank, ThresholdChange
from controller.engine.timeline import Timeline, Transition
from controller.events import EventBus
from controller.lang.compiled import Block, Protocol, Rule
from controller.safety import faults
from controller.safety.faults import FaultKind
from drivers.base import Command, Output, OutputError

IDLE, RUNNING, PAUSED, INHIBITED, STOPPED = "idle", "running", "paused", "inhibited", "stopped"
TIMELINE_COMPLETE = "timeline complete"


class Engine:
    def __init__(
        self,
        protocol: Protocol,
        bus: EventBus,
        outputs: Sequence[Output] = (),
        clock: Callable[[], float] = now,
        stimulation: StimulationPort | None = None,
        fired_today: Callable[[Rule], int] | None = None,
        signal_clock: SignalClock | None = None,
    ) -> None:
        self.protocol = protocol
        self.bus = bus
        self.clock = clock
        self.signal = signal_clock or SignalClock()
        self._starts: list[tuple[float, Block]] = []  # the last few blocks' start (signal time)
        self.timeline = Timeline(protocol.timeline)
        self.thresholds = ThresholdBank(
            dict(protocol.thresholds), {n: f.every_s for n, f in protocol.features.items()}
        )
        self.rules = [(rule, build(rule.when)) for rule in protocol.rules if rule.when is not None]
        self.edge_rules = [rule for rule in protocol.rules if rule.at is not None]
        self.stimulation = stimulation  # the dispatcher (controller.stimulation.Stimulation), or None
        self.pacing = {rule.index: RulePacing(rule, fired_today(rule) if fired_today and rule.max_per_day else 0)
                       for rule in protocol.rules}
        self.interlocks = [(lock, build(lock.when), InterlockState(lock)) for lock in protocol.interlocks]
        self.latest_at: dict[str, float | None] = {}
        self.latest: dict[str, float] = {}
        self.inhibitions: dict[str, str] = {}
        self.done = threading.Event()
        self.stop_reason: str | None = None
        self._state = IDLE
        self._lock = threading.RLock()
        # per block, by the block each frame was ACQUIRED in (its position in the timeline): feature values
        # for threshold adaptation, and [rule evaluations, of which rewarded]; a frame that arrives after its
        # block ended still counts in that block's statistics (``block_stats`` are updated in place)
        self._history: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self._counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self._ended: dict[int, dict[str, Any]] = {}  # block position -> its stats, once it ended
        # adaptive thresholds: [frames, rewarded frames] since each one's last adaptation
        self._adaptive = [n for n, spec in protocol.thresholds.items() if spec.adapt is not None]
        self._adapt_counts: dict[str, list[int]] = {}
        self._skipped: str | None = None  # while skip_block ends a block: the operator's reason
        self.block_stats: list[dict[str, Any]] = []
        self.latency = LatencyWindow()  # chunk arrival -> features out, for the operator's view
        self._routes = {
            kind: [o for o in outputs if kind in o.accepts] for kind in ("marker", "feedback", "features")
        }
        self._live_labels = self._adaptive_live_labels()

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        if self._state == RUNNING and self.inhibitions:
            return INHIBITED
        return self._state

    def _publish(self, record: rec.Record, t_source: float | None = None, *, at: float | None = None) -> None:
        self.bus.publish(record.event(self.clock() if at is None else at, t_source))

    def _publish_state(self, why: str | None = None) -> None:
        reason = "; ".join(self.inhibitions.values()) if self.inhibitions else why
        self._publish(rec.State(self.state, reason))

    def snapshot(self) -> dict[str, Any]:
        """What a display needs, consistent at one instant."""
        with self._lock:
            t = self.signal.signal(self.clock())
            block = self.timeline.current
            return {
                "state": self.state,
                "inhibitions": dict(self.inhibitions),
                "block": block.label if block else None,
                "block_index": block.index if block else None,
                "n_blocks": len(self.timeline.blocks),
                "time_left_s": self.timeline.time_left(t),
                "total_left_s": self.timeline.total_left(t),
                "features": dict(self.latest),
                "thresholds": dict(self.thresholds.values),
                "frames": self._counts[block.index][0] if block else 0,
                "rewarded": self._counts[block.index][1] if block else 0,
                "stim": self._stim_snapshot(),
                "reward_rates": [{"block": b.label, "index": b.index, "frames": self._counts[b.index][0],
                                  "rewarded": self._counts[b.index][1]}
                                 for b in self.timeline.blocks if b.index in self._counts],
                "latency_ms": self.latency.summary_ms(),
            }

    def _stim_snapshot(self) -> dict[str, Any] | None:
        if self.stimulation is None:
            return None
        gov = self.stimulation.governor
        return {"armed": [n for n in self.stimulation.links if gov.armed(n)],
                "interlocks": {s: i.reason for s, i in gov.inhibitions.items()}}

    # ------------------------------------------------------------------ operator acts
    def start(self, t: float | None = None) -> None:
        """Start the timeline now, or at ``t`` (e.g. an fMRI run's first volume's acquisition time)."""
        with self._lock:
            if self._state != IDLE:
                raise RuntimeError(f"cannot start from state {self._state!r}")
            t = self.clock() if t is None else t
            self.signal.start(t)
            self._state = RUNNING
            for change in self.thresholds.initial():
                self._threshold_changed(change, None)
            self._publish_state()
            self._apply(self.timeline.start(self.signal.signal(t)))

    def pause(self, reason: str | None = None) -> bool:
        """Pause the timeline and the rules; False when there was nothing to pause."""
        with self._lock:
            if self._state == RUNNING:
                self.timeline.pause(self._signal_now())
                self._state = PAUSED
                self._reset_conditions()
                self._publish_state(reason)
                return True
            return False

    def resume(self, reason: str | None = None) -> bool:
        with self._lock:
            if self._state == PAUSED:
                self.timeline.resume(self._signal_now())
                self._state = RUNNING
                self._publish_state(reason)
                return True
            return False

    def skip_block(self, reason: str | None = None) -> bool:
        """End the current block now (its block_end says skipped, and why) and start the next."""
        with self._lock:
            if self._state in (RUNNING, PAUSED):
                transition = self.timeline.skip(self._signal_now())
                if transition:
                    self._skipped = reason or "skipped"
                    try:
                        self._apply([transition])
                    finally:
                        self._skipped = None
                    return True
            return False

    def stop(self, reason: str = "operator stop") -> None:
        with self._lock:
            if self._state == STOPPED:
                return
            transition = self.timeline.stop(self._signal_now())
            if transition:
                self._end_block(transition)
            self._finish(reason)

    def set_threshold(self, name: str, value: float) -> None:
        """The operator sets a threshold mid-session; an adaptive one goes on adapting from this value."""
        if name not in self.thresholds.values:
            known = ", ".join(sorted(self.thresholds.values)) or "none"
            raise ValueError(f"no threshold {name!r} in this protocol (thresholds: {known})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"threshold {name!r}: the value must be a finite number, got {value!r}")
        with self._lock:
            self.thresholds.values[name] = float(value)
            self._threshold_changed(ThresholdChange(name, float(value), "operator"), None)

    def note(self, text: str) -> None:
        """An operator's note as a marker in the outlets (so the XDF has it, at the time it was made)."""
        with self._lock:
            self._send(Command("marker", self.clock(), {"text": f"note:{text}"}))

    def set_inhibit(self, source: str, reason: str) -> None:
        with self._lock:
            if self.inhibitions.get(source) == reason:
                return
            self.inhibitions[source] = reason
            self._reset_conditions()
            self._publish_state()

    def clear_inhibit(self, source: str) -> None:
        with self._lock:
            if self.inhibitions.pop(source, None) is not None:
                self._publish_state()

    def tick(self) -> None:
        """Advance the timeline on the clock (called by the session's control loop)."""
        with self._lock:
            if self._state in (RUNNING,):
                self._apply(self.timeline.advance(self._signal_now()))

    # ------------------------------------------------------------------ hot path
    def on_features(self, values: Sequence[FeatureSample]) -> None:
        """Feature values (``.name .value .source_time .sample_index``) in sample order."""
        if not values:
            return
        with self._lock:
            if self._state == RUNNING:
                self._apply(self.timeline.advance(self._signal_now()))
            if self._state != RUNNING:
                for v in values:
                    self.latest[v.name] = v.value
                return
            start = 0
            for i in range(1, len(values) + 1):
                if i == len(values) or values[i].sample_index != values[start].sample_index:
                    self._frame(values[start:i])
                    start = i

    def _frame(self, group: Sequence[FeatureSample]) -> None:
        t_src = group[-1].source_time
        # when the controller had the data: the controller's delay counts from here, not from the
        # sample's own stamp, which is older by the amplifier's block (its acquisition delay)
        t_arr = getattr(group[-1], "arrival", None)
        t_arr = t_src if t_arr is None else t_arr
        t_sig = self.signal.signal(t_src)  # rules count the signal's time
        block = self._acquired_in(group[-1], t_sig)
        label = block.label if block else None
        pos = block.index if block is not None else -1
        # a frame of a block that has ended counts in its statistics, not in an adaptation already made
        history = self._history[pos] if pos not in self._ended else defaultdict(list)
        updated = {}
        for v in group:
            self.latest[v.name] = v.value
            self.latest_at[v.name] = getattr(v, "at", None)
            history[v.name].append(v.value)
            updated[v.name] = v.value
            self._publish(rec.Feature(v.name, v.value, v.sample_index, None if block is None else block.index),
                          t_src)
            for th in self.thresholds.adaptive_for(v.name):
                if label in self._live_labels[th] or not self._live_labels[th]:
                    change = self.thresholds.observe(th, v.value)
                    if change:
                        self._threshold_changed(change, t_src)
        self._send(Command("features", t_src, {"values": updated}))
        latency = self.clock() - t_arr
        self.latency.record(latency)
        if self.stimulation is not None:
            self.stimulation.observe_latency(latency)
        self._check_interlocks(t_sig)
        if self.inhibitions:
            return
        fb = self.protocol.feedback
        if fb is not None and fb.value in updated and (not fb.during or label in fb.during):
            raw = updated[fb.value]
            scaled = min(1.0, max(0.0, (raw - fb.low) / (fb.high - fb.low)))
            t_sent = self._send(Command("feedback", t_src, {"value": scaled, "raw": raw}))
            self._publish(rec.Feedback(scaled, raw, t_sent - t_src), t_src)
        fired = False
        live = [(r, e) for r, e in self.rules if not r.during or label in r.during]
        if not live:
            return
        for rule, evaluate in live:
            if evaluate(self.latest, self.thresholds.values, t_sig) and self._may_fire(rule, t_sig):
                fired = True
                self._fire(rule, t_src, label, t_arr, block)
        self._count_frame(pos, fired)
        for name in self._adaptive:
            counts = self._adapt_counts.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += fired

    def _may_fire(self, rule: Rule, t: float) -> bool:
        pacing = self.pacing[rule.index]
        why = pacing.refusal(t)
        if why is None:
            pacing.fired(t)
            return True
        if pacing.announce(why):
            self._publish(rec.RulePaced(rule.index, f"{rule.label}: {why}"), t)
        return False

    def _count_frame(self, pos: int, fired: bool) -> None:
        counts = self._counts[pos]
        counts[0] += 1
        counts[1] += fired
        stats = self._ended.get(pos)
        if stats is not None:  # acquired in a block that has ended: its statistics take it late
            stats.update(frames=counts[0], rewarded=counts[1], reward_rate=counts[1] / counts[0],
                         late_frames=stats.get("late_frames", 0) + 1)

    def _acquired_in(self, value: FeatureSample, t_sig: float) -> Block | None:
        """The block a frame's sample was acquired in: an fMRI volume says (by its acquisition number),
        a sample stream's stamp tells (``_block_at``)."""
        pos: int | None = getattr(value, "block_index", None)
        if pos is not None and 0 <= pos < len(self.timeline.blocks):
            return self.timeline.blocks[pos]
        return self._block_at(t_sig)

    def _fire(self, rule: Rule, t_src: float, label: str | None, arrival: float | None = None,
              block: Block | None = None) -> None:
        stim = rule.do.stimulation
        block_index = block.index if block is not None else None
        if stim is not None:
            action = f"{stim.kind}:{stim.device}"
            t_sent = self._send(Command("marker", t_src, {"text": action}))
            self._publish(rec.Decision(action, rule.index, label, block_index, t_sent - t_src,
                                       t_sent - (arrival or t_src), rule.source), t_src)
            if self.stimulation is not None:
                at = self.latest_at.get(stim.at) if stim.at else None
                self.stimulation.execute(stim, t_src, self.rule_label(rule), dict(self.latest), at=at,
                                         arrival=arrival)
            return
        action = rule.do.feedback or rule.do.marker or "rule"
        t_sent = self._send(Command("marker", t_src, {"text": action}))
        self._publish(rec.Decision(action, rule.index, label, block_index, t_sent - t_src, None, rule.source), t_src)

    def rule_label(self, rule: Rule) -> str:
        """How the rule is named in verdicts and in the dose ledger (per_day counts by it)."""
        return f"{self.protocol.name} {rule.label}"

    def _check_interlocks(self, t: float) -> None:
        if self.stimulation is None:
            return
        for lock, evaluate, state in self.interlocks:
            change = state.update(bool(evaluate(self.latest, self.thresholds.values, t)), t)
            source = faults.source(FaultKind.INTERLOCK, lock.name)
            if change == "raise":
                self.stimulation.governor.inhibit(source, f"interlock {lock.name}: {lock.source}")
            elif change == "clear":
                self.stimulation.governor.clear(source)

    def _edge_rules(self, edge: str, block: Block, t: float) -> None:
        for rule in self.edge_rules:
            if rule.at == edge and (not rule.during or block.label in rule.during):
                if rule.do.stimulation is None and self.inhibitions:
                    continue
                if self._may_fire(rule, t):
                    # a scheduled act, not caused by a sample: its decision time is now (the block
                    # edge ``t`` is noticed at the next tick or frame, up to tens of ms later)
                    self._fire(rule, self.clock(), block.label, block=block)

    # ------------------------------------------------------------------ internals
    def _send(self, command: Command) -> float:
        t_sent = self.clock()
        for output in self._routes.get(command.kind, ()):
            try:
                t_sent = output.send(command)
            except OutputError as exc:
                self._publish(rec.Fault(output.name, str(exc)), command.t_source)
                self.set_inhibit(faults.source(FaultKind.OUTPUT, output.name), f"output fault: {exc}")
        return t_sent

    def _signal_now(self) -> float:
        return self.signal.signal(self.clock())

    def _block_at(self, t_sig: float) -> Block | None:
        """The block running at signal time ``t_sig`` (a frame's acquisition, not its arrival)."""
        current = self.timeline.current
        if not self._starts or t_sig >= self._starts[-1][0]:
            return current
        for start, block in reversed(self._starts):
            if t_sig >= start:
                return block
        return current  # older than every remembered start: the oldest context is unknown

    def _apply(self, transitions: list[Transition]) -> None:
        for sig_tr in transitions:
            tr = Transition(self.signal.lsl(sig_tr.t), sig_tr.ended, sig_tr.started)  # events: LSL time
            if tr.ended is not None:
                self._end_block(tr)
            if tr.started is not None:
                b = tr.started
                self._starts = [*self._starts[-7:], (sig_tr.t, b)]
                self._reset_conditions()
                self._send(Command("marker", tr.t, {"text": f"block_start:{b.label}"}))
                self._publish(rec.BlockStart(b.index, b.label, b.cycle, b.duration_s), tr.t)
                self._edge_rules("block_start", b, sig_tr.t)
        if self.timeline.finished and self._state != STOPPED:
            self._finish(TIMELINE_COMPLETE)

    def _end_block(self, tr: Transition) -> None:
        b = tr.ended
        assert b is not None, "called for a transition that ends a block"  # both callers see to it
        frames, rewarded = self._counts[b.index]
        ended = rec.BlockEnd(b.index, b.label, b.cycle, frames, rewarded, (rewarded / frames) if frames else None,
                             self._skipped is not None, self._skipped)
        stats = ended.to_data()  # the session summary's copy: a frame acquired in it but late still counts
        self.block_stats.append(stats)
        self._ended[b.index] = stats
        self._send(Command("marker", tr.t, {"text": f"block_end:{b.label}"}))
        self._publish(ended, tr.t)
        if self._state != STOPPED:
            self._edge_rules("block_end", b, self.signal.signal(tr.t))
        changes, problems = self.thresholds.block_ended(b.label, self._history.pop(b.index, {}))
        for change in changes:
            self._threshold_changed(change, tr.t)
        for problem in problems:
            self._publish(rec.Fault("thresholds", problem), tr.t)

    def _threshold_changed(self, change: ThresholdChange, t_source: float | None) -> None:
        t = self.clock()
        reward_rate = None
        if change.reason == "adapt":  # the rewards actually given over the same period, for comparison
            frames, rewarded = self._adapt_counts.pop(change.name, (0, 0))
            reward_rate = rewarded / frames if frames else None
        self._publish(rec.Threshold(change.name, change.value, change.reason, change.comparison_rate, reward_rate,
                                    change.n_values), t_source, at=t)
        if change.value is not None:  # displays draw the target line from it (e.g. the fMRI thermometer)
            self._send(Command("marker", t_source if t_source is not None else t,
                               {"text": f"threshold:{change.name}={change.value:.6g}"}))

    def _finish(self, reason: str) -> None:
        self.stop_reason = reason
        self._state = STOPPED
        self._publish(rec.State(STOPPED, reason))
        self.done.set()

    def _reset_conditions(self) -> None:
        for _, evaluate in self.rules:
            evaluate.reset()

    def _adaptive_live_labels(self) -> dict[str, set[str]]:
        """For each threshold: the block labels of the rules that read it (empty = always)."""
        live: dict[str, set[str]] = {name: set() for name in self.protocol.thresholds}
        for rule in self.protocol.rules:
            _, ths = names_in(rule.when)
            for th in ths:
                if th in live:
                    live[th].update(rule.during)
        return live
