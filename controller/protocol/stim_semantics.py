"""Stimulation in a protocol: devices, stimulate/set/stop actions, rule pacing and interlocks.

Checked as a whole with the rest of the protocol (errors with file:line:col). With a site
configuration, every device must exist there and every action's worst case (largest
feature-driven setting, the device's preset settings filled in) must be within the site's
limits: a protocol that could ask for more is refused at load time, naming the rule, the
limit and the value. The governor re-checks every command at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.features import registry as feature_registry
from controller.lang import compiled as c
from controller.lang import units
from controller.lang.source import Loc
from controller.protocol import raw
from controller.protocol.condition import parse_condition
from controller.protocol.document import Document, unknown

if TYPE_CHECKING:  # pragma: no cover
    from controller.safety.site import Site

# protocol key -> (governor SI key, unit family of a feature scale's output)
SETTING_KEYS = {
    "intensity": ("intensity_pct", units.PERCENT),
    "current": ("current_a", units.CURRENT),
    "frequency": ("frequency_hz", units.FREQUENCY),
    "pulse_width": ("pulse_width_s", units.DURATION),
    "phases": ("phases", None),
    "pulses": ("n_pulses", None),
}
SCALABLE = ("current", "frequency")


class StimChecks:
    """The stimulation part of :class:`Semantics` (same error reporting, same salvage rules)."""

    def __init__(self, sem: Document, site: Site | None) -> None:
        self.sem = sem
        self.site = site
        self.devices: dict[str, raw.DeviceDecl] = sem.valid_entries("devices")
        self.raw_devices = sem.section_names("devices")
        self.interlocks: dict[str, raw.InterlockDecl] = sem.valid_entries("interlocks")
        rules, _ = sem.valid_list("rules")
        self.rules: dict[int, raw.RuleDecl] = dict(rules)
        self.interlock_conditions: dict[str, Any] = {}
        self.scales: dict[tuple, c.FeatureScale] = {}  # (loc) -> compiled scale

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        self._check_devices()
        for i, rule in self.rules.items():
            self._check_rule(i, rule)
        self._check_interlocks()

    def _check_devices(self) -> None:
        if self.site is None:
            return
        for name, decl in self.devices.items():
            loc: Loc = ("devices", name)
            if name not in self.site.devices:
                valid = ", ".join(self.site.devices) or "none"
                self.sem.error(loc, f"devices: no device {name!r} in site {self.site.name!r} (site devices: {valid})", key=True)
                continue
            params = self._settings(decl, loc)
            if params:
                self._site_check(loc, f"devices.{name}", name, "set", params)

    def _check_rule(self, i: int, rule: raw.RuleDecl) -> None:
        base: Loc = ("rules", i)
        act = rule.do
        kind = act.kind
        stim = kind in ("stimulate", "set", "stop")
        if rule.per_day is not None and not stim:
            self.sem.error(base + ("per_day",), "per_day counts stimulation in the dose ledger: only for stimulate/set/stop rules")
        if rule.at is not None and not rule.during and self.sem.known["timeline"]:
            pass  # fires at every block start/end: allowed
        if not stim:
            return
        decl = getattr(act, kind)
        aloc: Loc = base + ("do", kind)
        device = decl.device
        if device not in self.raw_devices:
            if self.sem.section_ok("devices", dict):
                listed = sorted(self.raw_devices)
                hint = f"devices of this protocol: {', '.join(listed)}" if listed else "add a 'devices:' section naming it"
                self.sem.error(aloc + ("device",), f"device {device!r} is not in this protocol's devices ({hint})")
            return
        if kind == "stop":
            return
        params = self._settings(decl, aloc)
        if kind == "stimulate":
            if decl.duration is not None and decl.pulses is not None:
                self.sem.error(aloc + ("duration",), "give 'pulses' (a pulse or train) or 'duration' (continuous), not both")
                return
            if decl.ramp is not None and decl.duration is None:
                self.sem.error(aloc + ("ramp",), "ramp is the ramp-in of continuous stimulation: give a 'duration' too")
            if decl.at is not None:
                self._check_phase_feature(aloc + ("at",), decl.at)
        where = f"rule {i + 1} ({_rule_text(rule)})"
        if self.site is None or device not in self.devices or device not in self.site.devices:
            return
        merged = {**self._settings(self.devices[device], ("devices", device), report=False), **params}
        if kind == "set":
            self._site_check(aloc, where, device, "set", merged)
            return
        if decl.duration is not None:
            merged["duration_s"] = decl.duration
            if decl.ramp is not None:
                merged["ramp_s"] = decl.ramp
            self._site_check(aloc, where, device, "start", merged)
        else:
            self._site_check(aloc, where, device, "fire", merged)

    def _check_phase_feature(self, loc: Loc, name: str) -> None:
        feat = self.sem.features.get(name)
        if feat is None:
            if name not in self.sem.raw_features and self.sem.known["features"]:
                self.sem.error(loc, f"at: no feature {name!r}; it must be a phase feature")
            return
        timed = feature_registry.find(feat.kind)
        if timed is None or not timed.timed:  # only a timed kind's values carry a pulse time
            self.sem.error(loc, f"at: feature {name!r} is {feat.kind}; timing a pulse needs a phase feature")

    def _check_interlocks(self) -> None:
        for name, decl in self.interlocks.items():
            loc: Loc = ("interlocks", name, "when")
            parsed = parse_condition(decl.when, self.sem.raw_features, self.sem.raw_thresholds)
            names_known = self.sem.known["features"] and self.sem.known["thresholds"]
            for offset, message in parsed.issues:
                if parsed.condition is None or names_known:
                    self.sem.error_in(loc, offset, message)
            for site in parsed.compares:
                self.sem.check_compare(loc, site)
            self.interlock_conditions[name] = parsed

    # ------------------------------------------------------------------ helpers
    def _settings(self, decl: Any, loc: Loc, *, report: bool = True) -> dict[str, float]:
        """SI settings of a declaration; feature scales are checked and count with their largest value."""
        out: dict[str, float] = {}
        for key, (si_key, family) in SETTING_KEYS.items():
            value = getattr(decl, key, None)
            if value is None:
                continue
            if isinstance(value, raw.ScaleDecl):
                scale = self._scale(value, loc + (key,), family, report)
                if scale is None:
                    continue
                out[si_key] = scale.largest
            else:
                out[si_key] = float(value)
        return out

    def _scale(self, decl: raw.ScaleDecl, loc: Loc, family: str | None, report: bool) -> c.FeatureScale | None:
        if loc in self.scales:
            return self.scales[loc]
        ok = True
        feat = self.sem.features.get(decl.feature)
        if feat is None and decl.feature not in self.sem.raw_features and self.sem.known["features"]:
            if report:

                self.sem.error(loc + ("feature",), unknown("feature", decl.feature, self.sem.raw_features))
            ok = False
        lo, hi = decl.from_[0].value, decl.from_[1].value
        if lo == hi:
            if report:
                self.sem.error(loc + ("from",), "from: LOW and HIGH must differ")
            ok = False
        outs = []
        for j, text in enumerate(decl.to):
            try:
                q = units.parse_quantity(text, family)
            except units.UnitError as exc:
                if report:
                    self.sem.error(loc + ("to", j), f"to: {exc}")
                ok = False
                continue
            if q.value < 0:
                if report:
                    self.sem.error(loc + ("to", j), f"to: must be 0 or more, got {units.shown(text)}")
                ok = False
            outs.append(q.value)
        if not ok or len(outs) != 2:
            return None
        scale = c.FeatureScale(decl.feature, lo, hi, outs[0], outs[1])
        self.scales[loc] = scale
        return scale

    def _site_check(self, loc: Loc, where: str, device: str, kind: str, params: dict[str, float]) -> None:
        from controller.safety.limits import check_request

        assert self.site is not None
        for v in check_request(self.site, device, params, kind=kind):
            self.sem.error(loc, f"{where} could ask for more than the site allows: {v.text}", key=True)

    # ------------------------------------------------------------------ compile
    def compile_devices(self) -> dict[str, c.DeviceUse]:
        return {
            name: c.DeviceUse(name, self._settings(decl, ("devices", name), report=False),
                              self.sem.src.position(("devices", name), prefer_key=True)[0])
            for name, decl in self.devices.items()
        }

    def compile_action(self, i: int, rule: raw.RuleDecl) -> c.Action:
        act = rule.do
        kind = act.kind
        if kind == "feedback":
            return c.Action(feedback=act.feedback)
        if kind == "marker":
            return c.Action(marker=act.marker)
        decl = getattr(act, kind)
        loc: Loc = ("rules", i, "do", kind)
        line = self.sem.src.position(loc)[0]
        if kind == "stop":
            return c.Action(stimulation=c.StimAction("stop", decl.device, line=line))
        settings: dict[str, c.SettingValue] = {}
        for key, (si_key, family) in SETTING_KEYS.items():
            value = getattr(decl, key, None)
            if value is None:
                continue
            if isinstance(value, raw.ScaleDecl):
                scale = self._scale(value, loc + (key,), family, False)
                assert scale is not None
                settings[si_key] = scale
            else:
                settings[si_key] = float(value)
        if kind == "set":
            return c.Action(stimulation=c.StimAction("set", decl.device, settings, ramp_rate=decl.ramp, line=line))
        return c.Action(stimulation=c.StimAction("stimulate", decl.device, settings, duration_s=decl.duration,
                                                 ramp_s=decl.ramp, at=decl.at, line=line))

    def compile_interlocks(self) -> tuple[c.Interlock, ...]:
        out = []
        for name, decl in self.interlocks.items():
            cond = self.interlock_conditions[name].condition
            assert cond is not None
            out.append(c.Interlock(name, cond, decl.when, decl.clear_after or 0.0,
                                   self.sem.src.position(("interlocks", name), prefer_key=True)[0]))
        return tuple(out)


def _rule_text(rule: raw.RuleDecl) -> str:
    return f"when {rule.when!r}" if rule.when is not None else f"at {rule.at}"
