"""Cross-reference checks and compilation: from validated declarations to compiled objects.

The structural validation (:mod:`raw`) looks at one value at a time; here we look at the
whole protocol: names that must exist, windows that must fit their bands, thresholds that
must be known before a rule uses them, adaptive thresholds whose direction follows from
the rules. To report as much as possible in one pass, every entry that is valid on its
own takes part even when other entries are broken, and references to an entry that
exists but is broken are not reported again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from controller.features import registry as feature_registry
from controller.features.kind import CheckContext
from controller.lang import compiled as c
from controller.lang import units
from controller.lang.errors import Issue
from controller.lang.fields import LEVEL_FAMILIES
from controller.lang.source import KEY, Loc, Source
from controller.protocol import raw
from controller.protocol.condition import CompareSite, OperandSite, ParsedCondition, parse_condition, reward_direction
from controller.protocol.document import unknown
from controller.protocol.fmri_semantics import FmriChecks, is_volume_input
from controller.protocol.nirs_semantics import check_nirs_feature, check_nirs_input, nirs_spec
from controller.protocol.stim_semantics import StimChecks

MAX_BLOCKS = 10_000
_EPS = 1e-9

def feature_family(feat: Any) -> str | None:
    """The unit family of a declared feature's values (conditions, thresholds and feedback are checked with
    it): VOLTAGE needs a unit (150 uV), PERCENT a %, None a plain number. Each kind says its own."""
    return feature_registry.kind(feat.kind).value_unit(feat.params)


def _fmt(value: float, family: str | None) -> str:
    return units.format_quantity(value, family)


def _hz(value: float) -> str:
    return _fmt(value, units.FREQUENCY)


def _sec(value: float) -> str:
    return _fmt(value, units.DURATION)


def _band_text(band: tuple[float, float]) -> str:
    return f"[{_hz(band[0])}, {_hz(band[1])}]"


@dataclass
class _Use:
    """A comparison of a threshold in a rule."""

    rule: int
    loc: Loc  # the rule's 'when' scalar
    offset: int  # of the threshold token
    direction: str
    feature: str | None
    text: str  # the comparison as written, for messages


class Semantics:
    """Checks a protocol document as a whole; ``compile()`` builds the compiled Protocol."""

    def __init__(self, source: Source, site: Any = None) -> None:
        self.src = source
        self.data: dict = source.data if isinstance(source.data, dict) else {}
        self.issues: list[Issue] = []
        self._salvage()
        self.adapt: dict[str, tuple[str, str]] = {}  # threshold -> (direction, feature)
        self.conditions: dict[int, ParsedCondition] = {}
        self.stim = StimChecks(self, site)
        self.fmri = FmriChecks(self, feature_registry.volume_kinds())

    # ------------------------------------------------------------------ reporting

    def error(self, loc: Loc, message: str, *, key: bool = False) -> None:
        line, col = self.src.position(loc, prefer_key=key)
        self.issues.append(Issue(self.src.filename, line, col, message))

    def error_in(self, loc: Loc, offset: int, message: str) -> None:
        line, col = self.src.scalar_position(loc, offset)
        self.issues.append(Issue(self.src.filename, line, col, message))

    # ------------------------------------------------------------------ salvage valid parts

    def section_ok(self, section: str, kind: type) -> bool:
        """False when a whole section has the wrong type: its names are then unknown, and
        references to them are not reported (the section's own error says it all)."""
        return isinstance(self.data.get(section), (kind, type(None)))

    def section_names(self, section: str) -> set[str]:
        raw_section = self.data.get(section)
        return {k for k in raw_section if isinstance(k, str)} if isinstance(raw_section, dict) else set()

    def valid_entries(self, section: str) -> dict[str, Any]:
        raw_section = self.data.get(section)
        out: dict[str, Any] = {}
        if not isinstance(raw_section, dict):
            return out
        for key, value in raw_section.items():
            try:
                raw.NAME_ADAPTER.validate_python(key)
                out[key] = _validate_lenient(raw.ITEM_ADAPTERS[section], value)
            except ValidationError:
                pass
        return out

    def valid_list(self, section: str) -> tuple[list[tuple[int, Any]], bool]:
        raw_section = self.data.get(section)
        if raw_section is None:
            return [], section != "timeline"
        if not isinstance(raw_section, list):
            return [], False
        out: list[tuple[int, Any]] = []
        for i, value in enumerate(raw_section):
            try:
                out.append((i, _validate_lenient(raw.ITEM_ADAPTERS[section], value)))
            except ValidationError:
                pass
        return out, len(out) == len(raw_section)

    def _rule_parts(self) -> tuple[list[tuple[int, tuple[str, ...] | None, str | None]], bool]:
        """(index, during, when) of every rule, each part None when broken: a rule whose
        action is wrong still has its condition checked."""
        raw_rules = self.data.get("rules")
        if raw_rules is None:
            return [], True
        if not isinstance(raw_rules, list):
            return [], False
        out = []
        complete = True
        for i, value in enumerate(raw_rules):
            value = value if isinstance(value, dict) else {}
            when = value.get("when")
            out.append((i, _labels_or_none(value.get("during")), when if isinstance(when, str) else None))
            complete &= isinstance(when, str) or (when is None and value.get("at") in ("block_start", "block_end"))
        return out, complete

    def _salvage(self) -> None:
        self.raw_inputs = self.section_names("inputs")
        self.raw_features = self.section_names("features")
        self.raw_thresholds = self.section_names("thresholds")
        self.inputs: dict[str, raw.InputDecl] = self.valid_entries("inputs")
        self.features: dict[str, raw.FeatureDecl] = self.valid_entries("features")
        self.thresholds: dict[str, raw.ThresholdDecl] = self.valid_entries("thresholds")
        timeline, self.timeline_complete = self.valid_list("timeline")
        self.timeline_items = [item for _, item in timeline]
        self.rules, self.rules_complete = self._rule_parts()
        self.feedback: raw.FeedbackDecl | None = None
        if self.data.get("feedback") is not None:
            try:
                self.feedback = _validate_lenient(raw.ITEM_ADAPTERS["feedback"], self.data["feedback"])
            except ValidationError:
                pass
        self.raw_labels = _labels_in(self.data.get("timeline"))
        self.known = {
            "inputs": self.section_ok("inputs", dict),
            "features": self.section_ok("features", dict),
            "thresholds": self.section_ok("thresholds", dict),
            "timeline": self.section_ok("timeline", list),
        }

    # ------------------------------------------------------------------ checks

    def check(self) -> list[Issue]:
        self.blocks = self._flatten()
        self._check_inputs()
        self._check_features()
        self._check_thresholds()
        uses = self._check_rules()
        self._check_adaptive(uses)
        self._check_percentile_timing(uses)
        self._check_feedback()
        self.stim.check()
        self.fmri.check()
        return self.issues

    def _flatten(self) -> tuple[c.Block, ...]:
        def count(items: list) -> int:
            return sum(
                item.repeat * count(item.blocks) if isinstance(item, raw.RepeatDecl) else 1 for item in items
            )

        total = count(self.timeline_items)
        if total > MAX_BLOCKS:
            self.error(("timeline",), f"timeline: {total} blocks after expanding repeats; at most {MAX_BLOCKS} are supported", key=True)
            self.timeline_complete = False
            return ()
        out: list[c.Block] = []

        def walk(items: list, cycle: int | None) -> None:
            for item in items:
                if isinstance(item, raw.RepeatDecl):
                    for k in range(item.repeat):
                        walk(item.blocks, k)
                else:
                    ((label, duration),) = item.items()
                    out.append(c.Block(len(out), label, duration, cycle))

        walk(self.timeline_items, None)
        return tuple(out)

    def _check_inputs(self) -> None:
        for name, inp in self.inputs.items():
            if is_volume_input(inp):
                continue
            if inp.fnirs is not None:
                check_nirs_input(name, inp, self.error)
            if inp.reference == "average" and len(inp.channels or ()) < 2:
                self.error(("inputs", name, "reference"),
                           f"reference: the average of the input's only channel ({', '.join(inp.channels)}) is the "
                           "channel itself, so nothing would be left; list more channels, use {average: all EEG} "
                           "(every EEG channel of the stream) or name the reference channels, e.g. [A1, A2]")
            if inp.rate is None:
                continue
            nyquist = inp.rate / 2
            for field in ("highpass", "notch"):
                value = getattr(inp, field)
                if value is not None and value >= nyquist:
                    self.error(
                        ("inputs", name, field),
                        f"{field}: {_hz(value)} is at or above the Nyquist frequency {_hz(nyquist)} of the "
                        f"stated rate {_hz(inp.rate)}; use a frequency below {_hz(nyquist)}",
                    )

    def _check_features(self) -> None:
        for name, feat in self.features.items():
            kind, p = feat.kind, feat.params
            base: Loc = ("features", name, kind)
            if kind in self.fmri.kinds or is_volume_input(self.inputs.get(p.input)):
                continue  # FmriChecks
            feature_kind = feature_registry.kind(kind)
            if p.input not in self.raw_inputs and self.known["inputs"]:
                self.error(base + ("input",), f"input: {unknown('input', p.input, self.raw_inputs)}")
            inp = self.inputs.get(p.input)
            check_nirs_feature(kind, inp, p.input, base + ("input",), self.error)
            if inp is not None and inp.fnirs is None and inp.channels and "channels" in type(p).model_fields and p.channels is not None:
                for i, ch in enumerate(p.channels):  # (kinds that name their channels otherwise check them)
                    if ch not in inp.channels:
                        self.error(
                            base + ("channels", i),
                            f"channels: {ch!r} is not a channel of input {p.input!r}; "
                            f"its channels: {', '.join(inp.channels)}",
                        )
            if inp is not None and inp.rate is not None:
                nyquist = inp.rate / 2
                for field, band in feature_kind.bands(p):
                    if band[1] >= nyquist:
                        self.error(
                            base + (field,),
                            f"{field}: {_band_text(band)} reaches {_hz(band[1])}, at or above the Nyquist "
                            f"frequency {_hz(nyquist)} of input {p.input!r} (rate {_hz(inp.rate)}); "
                            f"keep bands below {_hz(nyquist)}",
                        )
            window = getattr(p, "window", None)
            if window is not None and p.every > window + _EPS:
                self.error(
                    base + ("every",),
                    f"every: {_sec(p.every)} is longer than the window {_sec(window)}, so samples between "
                    f"windows would be ignored; use every <= window",
                )
            before = len(self.issues)
            feature_kind.check(p, CheckContext(base, inp, self.error))
            if inp is not None and inp.rate is not None and len(self.issues) == before:
                self._check_at_rate(base, name, feat, inp)  # (it would repeat what was just reported)

    def _check_at_rate(self, base: Loc, name: str, feat: raw.FeatureDecl, inp: raw.InputDecl) -> None:
        """What would stop the kind from running at the input's stated rate (the runner applies
        the same test to the real stream)."""
        spec = feature_registry.kind(feat.kind).compile(name, feat.params, tuple(inp.channels or ()))
        if spec.band is not None and spec.band.hi_hz >= inp.rate / 2:
            return  # reported as a band over Nyquist
        for field, message in feature_registry.rate_problems(spec, inp.rate):
            loc = base + (field,) if field in feat.params.model_fields_set else base  # a default: the feature
            self.error(loc, f"{field}: {message} (input {feat.params.input!r}, stated rate {_hz(inp.rate)})")

    def _check_thresholds(self) -> None:
        for name, th in self.thresholds.items():
            base: Loc = ("thresholds", name)
            if name in self.raw_features:
                self.error(
                    base + (KEY,),
                    f"threshold {name!r} has the same name as a feature, so conditions could not tell them "
                    "apart; rename one of them",
                )
            if th.percentile is not None:
                p = th.percentile
                if p.feature not in self.raw_features and self.known["features"]:
                    self.error(base + ("percentile", "feature"), f"feature: {unknown('feature', p.feature, self.raw_features)}")
                if p.during not in self.raw_labels and self.known["timeline"]:
                    self.error(base + ("percentile", "during"), f"during: {unknown('block', p.during, self.raw_labels)}")

    def _check_labels(self, loc: Loc, labels: tuple[str, ...]) -> None:
        for j, label in enumerate(labels):
            if label not in self.raw_labels and self.known["timeline"]:
                self.error(loc + (j,), f"during: {unknown('block', label, self.raw_labels)}")

    # ------------------------------------------------------------------ rules

    def _check_rules(self) -> dict[str, list[_Use]]:
        uses: dict[str, list[_Use]] = {}
        for i, during, when in self.rules:
            base: Loc = ("rules", i)
            if during is not None:
                self._check_labels(base + ("during",), during)
            if when is None:
                continue
            when_loc = base + ("when",)
            parsed = parse_condition(when, self.raw_features, self.raw_thresholds)
            self.conditions[i] = parsed
            names_known = self.known["features"] and self.known["thresholds"]
            for offset, message in parsed.issues:
                if parsed.condition is None or names_known:  # syntax errors always
                    self.error_in(when_loc, offset, message)
            for site in parsed.compares:
                self.check_compare(when_loc, site)
                for side in (site.left, site.right):
                    if isinstance(side.operand, c.ThresholdRef):
                        direction = reward_direction(site.compare, side.operand.name, site.negated)
                        assert direction is not None
                        text = f"{site.left.text} {site.compare.op} {site.right.text}"
                        uses.setdefault(side.operand.name, []).append(
                            _Use(i, when_loc, side.offset, direction[0], direction[1], text)
                        )
        return uses

    def _family_of(self, site: OperandSite) -> tuple[bool, str | None, str]:
        """(known, family, description) of an operand's unit family."""
        o = site.operand
        if isinstance(o, c.Constant):
            return True, site.family, repr(site.text)
        if isinstance(o, c.FeatureRef):
            feat = self.features.get(o.name)
            if feat is None:
                return False, None, o.name
            return True, feature_family(feat), f"{o.name} ({feat.kind})"
        th = self.thresholds.get(o.name)
        if th is None:
            return False, None, o.name
        if th.fixed is not None:
            return True, th.fixed.family, f"threshold {o.name!r} (fixed: {th.fixed})"
        feat = self.features.get(th.percentile.feature)
        if feat is None:
            return False, None, o.name
        return True, feature_family(feat), f"threshold {o.name!r} (a percentile of {th.percentile.feature}, {feat.kind})"

    def check_compare(self, loc: Loc, site: CompareSite) -> None:
        sides = (site.left, site.right)
        for s in sides:
            if isinstance(s.operand, c.Constant) and s.family not in (None, *LEVEL_FAMILIES):
                self.error_in(loc, s.offset, f"expected a plain number or an amplitude like '150 uV', got {s.text!r}")
                return
        features = [s for s in sides if isinstance(s.operand, c.FeatureRef)]
        if not features:
            self.error_in(
                loc, site.offset,
                f"'{site.left.text} {site.compare.op} {site.right.text}' compares no feature; "
                "one side must be a feature, e.g. 'tbr < goal'",
            )
            return
        feat_site = features[0]
        other = site.right if feat_site is site.left else site.left
        known_f, fam_f, desc_f = self._family_of(feat_site)
        known_o, fam_o, desc_o = self._family_of(other)
        if not (known_f and known_o) or fam_f == fam_o:
            return
        if isinstance(other.operand, c.Constant):
            if fam_f == units.VOLTAGE:
                msg = f"{desc_f} is an amplitude: write the number with its unit, e.g. '150 uV', got {other.text!r}"
            elif fam_f == units.PERCENT:
                msg = (f"{desc_f} is a percentage of its trend: write the number with %, e.g. '175 %' "
                       f"(75 % above the usual level), got {other.text!r}")
            elif fam_f == units.CONCENTRATION:
                msg = (f"{desc_f} is a haemoglobin concentration change: write the number with its unit, "
                       f"e.g. '0.5 umol/L', got {other.text!r}")
            else:
                msg = f"{desc_f} is a plain number: compare it with a plain number, got {other.text!r}"
        else:
            what = {units.VOLTAGE: "an amplitude (V, mV, uV)", units.PERCENT: "a percentage (%)",
                    units.CONCENTRATION: "a concentration (mol/L, umol/L)"}.get(fam_f, "a plain number")  # type: ignore[arg-type]
            msg = f"{desc_f} is {what}, which cannot be compared with {desc_o}"
        self.error_in(loc, other.offset, msg)

    def _check_adaptive(self, uses: dict[str, list[_Use]]) -> None:
        for name, th in self.thresholds.items():
            if th.adapt is None:
                continue
            mine = uses.get(name, [])
            if not mine:
                if not self.rules_complete or any(p.condition is None for p in self.conditions.values()):
                    continue  # a broken rule may be the one that uses it
                self.error(
                    ("thresholds", name, "adapt"),
                    f"threshold {name!r} adapts but no rule uses it; compare a feature with it in a rule "
                    f"(e.g. 'when: tbr < {name}') or remove adapt",
                    key=True,
                )
                continue
            first = None
            for use in mine:
                if use.feature is None:
                    continue  # compares no feature: reported by check_compare
                if first is None:
                    first = use
                    continue
                if (use.direction, use.feature) != (first.direction, first.feature):
                    line, _ = self.src.scalar_position(first.loc, first.offset)
                    self.error_in(
                        use.loc, use.offset,
                        f"adaptive threshold {name!r} needs one direction and one feature: '{use.text}' rewards "
                        f"{use.feature} {use.direction} it, but '{first.text}' (line {line}) rewards "
                        f"{first.feature} {first.direction} it",
                    )
            if first is not None:
                self.adapt[name] = (first.direction, first.feature)  # type: ignore[assignment]

    def _check_percentile_timing(self, uses: dict[str, list[_Use]]) -> None:
        if not self.timeline_complete or not self.blocks:
            return
        rules = {i: during for i, during, _ in self.rules}
        for name, th in self.thresholds.items():
            if th.percentile is None:
                continue
            label = th.percentile.during
            first = next((b.index for b in self.blocks if b.label == label), None)
            if first is None:
                continue  # unknown label: reported already
            for use in uses.get(name, []):
                during = rules[use.rule]
                if during is None:
                    continue
                live = [b for b in self.blocks if not during or b.label in during]
                if live and live[0].index <= first:
                    start = live[0]
                    self.error(
                        ("thresholds", name, "percentile", "during"),
                        f"during: threshold {name!r} is known only when the first {label!r} block "
                        f"(block {first + 1}) ends, but rule {use.rule + 1} uses it from block {start.index + 1} "
                        f"({start.label!r}); collect it in an earlier block or restrict the rule with 'during:'",
                    )
                    break

    def _check_feedback(self) -> None:
        raw_fb = self.data.get("feedback")
        if not isinstance(raw_fb, dict):
            return
        value = raw_fb.get("value")
        if isinstance(value, str) and value not in self.raw_features and self.known["features"]:
            self.error(("feedback", "value"), f"value: {unknown('feature', value, self.raw_features)}")
        during = _labels_or_none(raw_fb.get("during"))
        if during is not None:
            self._check_labels(("feedback", "during"), during)
        fb = self.feedback
        if fb is None:
            return
        feat = self.features.get(fb.value)
        if feat is None:
            return
        family = feature_family(feat)
        for k, q in enumerate(fb.range):
            if q.family != family:
                if family == units.VOLTAGE:
                    msg = f"range: {fb.value} is an amplitude: give the limits with a unit, e.g. [50 uV, 10 uV], got {q}"
                elif family == units.PERCENT:
                    msg = f"range: {fb.value} ({feat.kind}) is a percentage: give the limits with %, e.g. [100 %, 300 %], got {q}"
                elif family == units.CONCENTRATION:
                    msg = (f"range: {fb.value} ({feat.kind}) is a concentration change: give the limits with a unit, "
                           f"e.g. [0 umol/L, 1 umol/L], got {q}")
                else:
                    msg = f"range: {fb.value} ({feat.kind}) is a plain number: give plain numbers, got {q}"
                self.error(("feedback", "range", k), msg)

    # ------------------------------------------------------------------ compile

    def compile(self, decl: raw.ProtocolDecl) -> c.Protocol:
        """The compiled protocol; call only when ``check()`` found nothing."""
        inputs = {
            name: c.InputSpec(
                name=name,
                stream=c.StreamSelector(inp.stream.name, inp.stream.type, inp.stream.source_id),
                channels=tuple(inp.channels or ()),
                reference=inp.reference,
                highpass_hz=inp.highpass,
                notch_hz=inp.notch,
                stall_timeout_s=inp.stall,
                max_gap_s=inp.max_gap,
                resolve_timeout_s=inp.resolve_timeout,
                rate_hz=inp.rate,
                unit=inp.unit,
                fnirs=nirs_spec(inp.fnirs),
                ssp=None if inp.ssp is None else c.SspSpec(inp.ssp.stream, inp.ssp.file),
            )
            for name, inp in decl.inputs.items()
            if not is_volume_input(inp)
        }
        volume_inputs = {name: self.fmri.compile_volume_input(name, inp)
                         for name, inp in decl.inputs.items() if is_volume_input(inp)}
        features = {
            name: (self.fmri.compile_feature(name, feat, volume_inputs[feat.params.input].tr_s)
                   if feat.kind in self.fmri.kinds
                   else feature_registry.kind(feat.kind).compile(name, feat.params, inputs[feat.params.input].channels))
            for name, feat in decl.features.items()
        }
        thresholds = {}
        for name, th in decl.thresholds.items():
            adapt = None
            if th.adapt is not None:
                direction, feature = self.adapt[name]
                adapt = c.AdaptSpec(th.adapt.every, th.adapt.target_reward_rate, direction, feature)  # type: ignore[arg-type]
            pct = th.percentile
            thresholds[name] = c.ThresholdSpec(
                name=name,
                fixed=th.fixed.value if th.fixed is not None else None,
                percentile=c.PercentileSpec(pct.feature, pct.during, float(pct.q)) if pct is not None else None,
                adapt=adapt,
            )
        rules = []
        for i, rule in enumerate(decl.rules):
            cond = self.conditions[i].condition if rule.when is not None else None
            assert cond is not None or rule.at is not None
            rules.append(
                c.Rule(
                    index=i,
                    during=tuple(rule.during),
                    when=cond,  # type: ignore[arg-type]  # None for block-edge rules (`at`)
                    do=self.stim.compile_action(i, rule),
                    source=rule.when if rule.when is not None else f"at {rule.at}",
                    line=self.src.position(("rules", i))[0],
                    at=rule.at,
                    refractory_s=rule.refractory,
                    max_per_episode=rule.per_episode.count if rule.per_episode else None,
                    episode_gap_s=rule.per_episode.gap if rule.per_episode else None,
                    max_per_session=rule.per_session,
                    max_per_day=rule.per_day,
                )
            )
        feedback = None
        if decl.feedback is not None:
            fb = decl.feedback
            feedback = c.FeedbackSpec(fb.value, fb.range[0].value, fb.range[1].value, tuple(fb.during))
        return c.Protocol(
            name=decl.protocol,
            inputs=inputs,
            features=features,
            thresholds=thresholds,
            timeline=self.blocks,
            rules=tuple(rules),
            feedback=feedback,
            devices=self.stim.compile_devices(),
            interlocks=self.stim.compile_interlocks(),
            description=decl.description,
            volume_inputs=volume_inputs,
            rois=self.fmri.compile_rois(decl.rois),
            runs=self.fmri.compile_runs(decl.runs),
        )


def _labels_or_none(value: Any) -> tuple[str, ...] | None:
    try:
        return raw.LABELS_ADAPTER.validate_python(value)
    except ValidationError:
        return None


def _validate_lenient(adapter: TypeAdapter, value: Any) -> Any:
    """Validate, ignoring unknown keys (already reported), so a typo in one key does not
    hide the rest of the entry from the cross-reference checks."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        extras = [tuple(p for p in e["loc"] if p not in raw.TAGS) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if not extras:
            raise
    value = copy.deepcopy(value)
    for loc in extras:
        holder = value
        for part in loc[:-1]:
            holder = holder[part]
        holder.pop(loc[-1], None)
    return adapter.validate_python(value)


def _labels_in(timeline: Any) -> set[str]:
    """Every block label written in a (possibly invalid) timeline, so that broken entries
    elsewhere do not also produce "unknown block" errors."""
    out: set[str] = set()
    if not isinstance(timeline, list):
        return out
    for item in timeline:
        if isinstance(item, dict):
            if raw.RESERVED_LABELS & set(item):
                out |= _labels_in(item.get("blocks"))
            else:
                out |= {k for k in item if isinstance(k, str)}
    return out
