"""Site configuration: the example site loads; every bad site in tests/data/sites_bad is
refused with exactly the errors its ``# expect: @TOKEN[#N]: message`` lines announce, at
the position of the N-th occurrence of TOKEN in the file's non-comment lines (found by
searching the text, independently of the loader)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from config import CONFIG_DIR
from controller.lang import units
from controller.safety import SiteError, json_schema, load_site, loads_site
from controller.safety import quantities as q
from controller.safety.train_table import TrainTable
from drivers.registry import DRIVERS

BAD_DIR = Path(__file__).resolve().parents[2] / "data" / "sites_bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: @(?P<token>.+?)(?:#(?P<n>\d+))?: (?P<msg>.+)$")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        m = _EXPECT.match(line)
        if not m:
            continue
        token, n = m.group("token"), int(m.group("n") or 1)
        hits = [(i + 1, col + 1) for i, text in enumerate(lines) if not text.lstrip().startswith("#")
                for col in [j.start() for j in re.finditer(re.escape(token), text)]]
        assert len(hits) >= n, f"{path.name}: token {token!r} occurs {len(hits)} times, wanted #{n}"
        out.append((*hits[n - 1], m.group("msg")))
    return out


def test_fixtures_present() -> None:
    assert len(BAD_FILES) >= 20
    for path in BAD_FILES:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_site_reports_expected_errors(path: Path) -> None:
    with pytest.raises(SiteError) as info:
        load_site(path)
    issues = info.value.issues
    want = expectations(path)
    listing = "\n".join(str(i) for i in issues)
    assert len(issues) == len(want), listing
    for line, col, message in want:
        assert any(i.line == line and i.col == col and message in i.message for i in issues), (
            f"expected {path.name}:{line}:{col}: {message}\ngot:\n{listing}")
    for text, issue in zip(str(info.value).splitlines(), issues):
        assert text == f"{path}:{issue.line}:{issue.col}: {issue.message}"


def test_example_site_loads_with_its_devices() -> None:
    site = load_site(CONFIG_DIR / "site.yaml")
    assert set(site.devices) == {"tms", "tms2", "tavns", "tavns_1ms", "tacs", "dbs", "adbs", "rns"}
    assert site.timezone == "Europe/Berlin" and site.max_loop_latency_s == 0.005 and site.input_stall_s == 1.0
    tms, tavns, tacs, dbs = (site.devices[n] for n in ("tms", "tavns", "tacs", "dbs"))
    assert (tms.driver, tms.port, dict(tms.options)) == ("magstim", "/dev/ttyUSB0", {"model": "rapid"})
    assert tms.limits.intensity_max == 80.0 and tms.limits.min_inter_train == 5.0 and tms.limits.blanking == 0.1
    assert tms.limits.train_table is not None and "Rossi" in tms.limits.train_table.source
    assert dict(tavns.fixed) == {"current_a": 0.5e-3, "pulse_width_s": 250e-6, "phases": 2.0}
    assert tavns.limits.electrode_area == pytest.approx(0.5e-4) and tavns.limits.shannon_k_max == 1.5
    assert tacs.port == "127.0.0.1:1235" and tacs.limits.ramp_rate_max == pytest.approx(1e-4)
    assert tacs.limits.train_duration_max == 1800.0 and tacs.limits.charge_per_session_max == 3.6
    assert dbs.driver == "triggerbox" and dbs.limits.charge_density_max == pytest.approx(0.3)  # 30 uC/cm2 in C/m2
    assert len(site.sha256) == 64 and site.path.endswith("site.yaml")


def test_defaults_and_sha_of_text() -> None:
    text = ("site: s\ndevices:\n  t:\n    driver: magstim\n    port: loop://\n"
            "    limits: {intensity_max: 50 %, frequency_max: 1 Hz, pulses_per_session_max: 10}\n")
    site = loads_site(text, "x.yaml")
    assert site.timezone is None and site.tzinfo is None
    assert site.max_loop_latency_s == 0.005 and site.input_stall_s == 1.0
    import hashlib
    assert site.sha256 == hashlib.sha256(text.encode()).hexdigest()


def _errors(text: str) -> list[str]:
    with pytest.raises(SiteError) as info:
        loads_site(text, "s.yaml")
    return [str(i) for i in info.value.issues]


def test_exact_positions_written_out() -> None:
    # counted by hand: line 6 is "      current_max: 2 mX", the value starts at column 20
    text = ("site: s\n"
            "devices:\n"
            "  tacs:\n"
            "    driver: starstim\n"
            "    limits:\n"
            "      current_max: 2 mX\n"
            "      frequency_max: 150 Hz\n"
            "      charge_per_session_max: 1 C\n"
            "    port: 127.0.0.1:1235\n")
    assert _errors(text) == [
        "s.yaml:6:20: current_max: unknown unit 'mX' in '2 mX'; expected a current like '1.5 mA' or '500 uA' (units: A, mA, uA)"
    ]


def test_yaml_syntax_error_and_empty_file() -> None:
    assert _errors("site: x\ndevices: {tms: [\n") == [
        "s.yaml:3:1: YAML syntax error: while parsing a flow node: expected the node content, but found '<stream end>'"
    ]
    (msg,) = _errors("# nothing\n")
    assert msg.startswith("s.yaml:1:1: empty site file; expected a mapping with keys site, description, timezone")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(b"site: x\n# caf\xe9\n")
    with pytest.raises(SiteError) as info:
        load_site(path)
    assert str(info.value) == f"{path}:2:6: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"


def test_json_schema_describes_limits() -> None:
    schema = json_schema()
    json.dumps(schema)
    assert schema["title"] == "neuroreflex site configuration"
    limits = schema["$defs"]["LimitsDecl"]["properties"]
    assert {"intensity_max", "shannon_k_max", "train_table", "ramp_rate_max"} <= set(limits)
    assert re.match(limits["electrode_area"]["anyOf"][0]["pattern"], "1.0 cm2")
    assert limits["ramp_rate_max"]["anyOf"][0]["pattern"]
    assert schema["$defs"]["LimitsDecl"]["additionalProperties"] is False


def test_driver_names_come_from_the_driver_registry() -> None:
    """A driver registered is a driver a site may name: the schema and the loader take the registry's list."""
    assert json_schema()["$defs"]["DeviceDecl"]["properties"]["driver"]["enum"] == list(DRIVERS)
    with pytest.raises(SiteError, match="unknown driver 'magstym' \\(did you mean 'magstim'\\?\\); "
                                        "known drivers: magstim, magventure, triggerbox, starstim"):
        loads_site("site: x\ndevices:\n  tms: {driver: magstym, port: /dev/null, limits: {}}\n")


@pytest.mark.parametrize("text, family, si", [
    ("20 uC", q.CHARGE, 20e-6), ("0.5 mC", q.CHARGE, 0.5e-3), ("3.6 C", q.CHARGE, 3.6), ("250 nC", q.CHARGE, 250e-9),
    ("20 \u00b5C", q.CHARGE, 20e-6), ("1.0 cm2", q.AREA, 1e-4), ("6 mm2", q.AREA, 6e-6), ("1 cm\u00b2", q.AREA, 1e-4),
    ("30 uC/cm2", q.CHARGE_DENSITY, 0.3), ("0.1 mA/s", q.CURRENT_RATE, 1e-4), ("50 uA/s", q.CURRENT_RATE, 50e-6),
])
def test_site_quantities(text: str, family: str, si: float) -> None:
    assert q.parse(text, family) == pytest.approx(si, rel=1e-15)


@pytest.mark.parametrize("value, family, message", [
    (1.0, q.AREA, "expected an area like '1.0 cm2' or '6 mm2', got 1.0 (no unit)"),
    ("1 cm", q.AREA, "unknown unit 'cm' in '1 cm'; expected an area like '1.0 cm2' or '6 mm2' (units: m2, cm2, mm2)"),
    ("1 cm2", q.CHARGE, "expected a charge like '20 uC' or '0.5 mC', got '1 cm2' (an area)"),
    ("lots", q.CHARGE, "expected a charge like '20 uC' or '0.5 mC', got 'lots'"),
    (True, q.CHARGE, "expected a charge like '20 uC' or '0.5 mC', got true"),
])
def test_site_quantity_errors(value: object, family: str, message: str) -> None:
    with pytest.raises(units.UnitError) as info:
        q.parse(value, family)
    assert str(info.value) == message


def _table() -> TrainTable:
    return TrainTable("test", "motor_threshold", (100.0, 110.0, 120.0), (1.0, 10.0, 20.0),
                      ((1800.0, 1800.0, 360.0), (5.0, 0.8, 0.9), (2.0, 1.6, 1.0)))


def test_train_table_never_interpolates_upward() -> None:
    t = _table()
    assert t.max_duration(10.0, 110.0) == 0.8
    assert t.max_duration(9.0, 105.0) == 0.8  # next row and column at or above
    assert t.max_duration(10.0, 90.0) == 5.0  # below the first column: first column
    assert t.max_duration(0.5, 100.0) == 1800.0
    assert t.max_duration(20.0, 121.0) is None and t.max_duration(21.0, 100.0) is None  # beyond: nothing allowed


def test_train_table_lower_envelope_fixes_non_monotonic_cells() -> None:
    t = _table()
    assert t.durations[1][2] == 0.9 and t.max_duration(10.0, 120.0) == 0.8  # not more than at 110 %
    assert t.durations[2][1] == 1.6 and t.max_duration(20.0, 110.0) == 0.8  # not more than at 10 Hz
    for r in range(3):
        for c in range(3):
            dominated = [t.durations[i][j] for i in range(r + 1) for j in range(c + 1)]
            assert t.envelope[r][c] == min(dominated)
