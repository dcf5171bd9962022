"""The site file's telemetry: section, the connection options built from it, and the messages a
session's events make (no broker here: parsing and translation are pure).

Errors come as FILE:LINE:COL like the rest of the site file; a password is never accepted in the
file; the password and TLS files are read at connect time and a missing one is named.
"""

from __future__ import annotations

import json
import math
import socket
import ssl
from pathlib import Path

import pytest
from mosquitto_broker import OPENSSL, make_certs

from controller import event_records as rec
from controller.safety.site import SiteError, load_site, loads_site
from controller.telemetry import topics as tp
from controller.telemetry.config import TelemetryConfig, parse_broker_url
from controller.telemetry.connection import TelemetryConnectionError, client_options
from controller.telemetry.messages import SessionTelemetry

SITE = """\
site: room-1
devices:
  tms:
    driver: magstim
    port: /dev/ttyUSB0
    limits: {intensity_max: 80 %, frequency_max: 20 Hz, pulses_per_session_max: 100}
"""


def site_with(section: str, tmp_path: Path | None = None):
    text = SITE + "telemetry:\n" + "".join(f"  {line}\n" for line in section.strip().splitlines())
    if tmp_path is None:
        return loads_site(text, "site.yaml")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_site(path)


def errors(section: str) -> list[str]:
    with pytest.raises(SiteError) as info:
        site_with(section)
    return [str(i) for i in info.value.issues]


def test_no_section_no_telemetry():
    assert loads_site(SITE).telemetry is None


def test_defaults_and_the_site_name():
    cfg = site_with("broker: mqtt://broker.lab").telemetry
    assert cfg is not None
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.tls) == ("broker.lab", 1883, False)
    assert (cfg.topic_prefix, cfg.site, cfg.features_hz, cfg.feedback_hz, cfg.queue) == ("neuroreflex", "room-1", 2.0, 10.0, 1000)
    assert cfg.username is None and cfg.password_file is None and cfg.ca_file is None


def test_full_section_paths_relative_to_the_site_file(tmp_path):
    cfg = site_with("""
broker: mqtts://broker.lab:8884
tls: {ca: certs/ca.crt, cert: certs/room1.crt, key: /etc/keys/room1.key}
username: room1
password_file: secrets/room1.pw
topic_prefix: lab/neuroreflex
site: building-a
rates: {features: 5 Hz, feedback: all}
queue: 50
""", tmp_path).telemetry
    assert cfg is not None
    assert cfg.broker.url == "mqtts://broker.lab:8884"
    assert cfg.ca_file == tmp_path / "certs/ca.crt" and cfg.cert_file == tmp_path / "certs/room1.crt"
    assert cfg.key_file == Path("/etc/keys/room1.key")
    assert cfg.password_file == tmp_path / "secrets/room1.pw" and cfg.username == "room1"
    assert (cfg.topic_prefix, cfg.site, cfg.features_hz, cfg.feedback_hz, cfg.queue) == ("lab/neuroreflex", "building-a", 5.0, None, 50)


def test_a_password_in_the_file_is_refused_where_it_is_written():
    (msg,) = errors("broker: mqtt://b\nusername: u\npassword: hunter2")
    assert msg.startswith("site.yaml:10:13: password: a password is never written in the site file")
    assert "hunter2" not in msg


@pytest.mark.parametrize(("section", "expected"), [
    ("broker: http://b:1883", "site.yaml:8:11: broker: expected a broker URL starting mqtt:// or mqtts://"),
    ("broker: mqtt://user:pw@b", "site.yaml:8:11: broker: write the user as `username:`"),
    ("broker: mqtt://b:99999", "site.yaml:8:11: broker: the port of 'mqtt://b:99999' must be a number"),
    ("broker: mqtt://b\nrates: {features: 2 Hzz}", "site.yaml:9:21: features: unknown unit 'Hzz'"),
    ("broker: mqtt://b\nrates: {features: 0 Hz}", "site.yaml:9:21: features: must be above 0 Hz"),
    ("broker: mqtt://b\nrates: {featurs: 2 Hz}", "site.yaml:9:11: unknown rate 'featurs' in telemetry.rates (did you mean 'features'?)"),
    ("broker: mqtt://b\nqueue: 0", "site.yaml:9:10: queue: must be at least 1, got 0"),
    ("broker: mqtt://b\ntopic_prefix: /nr/#", "site.yaml:9:17: topic_prefix: expected a topic prefix"),
    ("broker: mqtt://b\npassword_env: 1BAD", "site.yaml:9:17: password_env: expected an environment variable name"),
    ("brokr: mqtt://b", "site.yaml:8:3: unknown key 'brokr' in telemetry (did you mean 'broker'?)"),
    ("topic_prefix: nr", "site.yaml:7:1: missing required key 'broker' in telemetry"),
])
def test_shape_errors_at_file_line_col(section, expected):
    found = errors(section)
    assert any(m.startswith(expected) for m in found), found


@pytest.mark.parametrize(("section", "expected"), [
    ("broker: mqtt://b\ntls: {ca: ca.crt}", "site.yaml:9:3: tls: TLS files are given but the broker URL 'mqtt://b' is plain mqtt://"),
    ("broker: mqtts://b\ntls: {cert: c.crt}", "site.yaml:9:9: tls: cert is given without key"),
    ("broker: mqtts://b\nusername: u\npassword_file: pw\npassword_env: PW", "site.yaml:11:3: password_env: give the password in password_file or in password_env, not both"),
    ("broker: mqtts://b\npassword_env: PW", "site.yaml:9:3: password_env: a password needs a username"),
])
def test_cross_field_errors_at_file_line_col(section, expected):
    assert errors(section) == [expected] or any(m.startswith(expected) for m in errors(section))


def test_broker_url_for_the_command_line():
    assert parse_broker_url("mqtts://h").port == 8883
    with pytest.raises(ValueError, match="no host"):
        parse_broker_url("mqtt://:1883")


# ----------------------------------------------------------------------------- connection options


def test_plain_options_and_no_secret_read_when_none_is_configured():
    cfg = TelemetryConfig.for_broker("mqtt://127.0.0.1:1884", site="s")
    opts = client_options(cfg, client_id="neuroreflex-s-x", will="WILL")
    assert opts == {"hostname": "127.0.0.1", "port": 1884, "identifier": "neuroreflex-s-x", "username": None,
                    "password": None, "tls_context": None, "will": "WILL",
                    "socket_options": ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)}  # small packets at once


def test_password_from_file_at_connect_time(tmp_path):
    pw = tmp_path / "pw"
    cfg = site_with("broker: mqtt://b\nusername: room1\npassword_file: pw", tmp_path).telemetry
    with pytest.raises(TelemetryConnectionError, match=f"password_file {pw} does not exist"):
        client_options(cfg, client_id="x")
    pw.write_text("s3cret\n")
    assert client_options(cfg, client_id="x")["password"] == "s3cret"
    pw.write_text("rotated\n")  # read at every connect: a rotated password needs no restart
    assert client_options(cfg, client_id="x")["password"] == "rotated"


def test_password_from_the_environment(monkeypatch):
    cfg = site_with("broker: mqtt://b\nusername: room1\npassword_env: NR_TEST_MQTT_PW").telemetry
    monkeypatch.delenv("NR_TEST_MQTT_PW", raising=False)
    with pytest.raises(TelemetryConnectionError, match="environment variable NR_TEST_MQTT_PW is not set"):
        client_options(cfg, client_id="x")
    monkeypatch.setenv("NR_TEST_MQTT_PW", "from-env")
    assert client_options(cfg, client_id="x")["password"] == "from-env"


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_tls_context_from_the_site_files(tmp_path):
    certs = make_certs(tmp_path / "certs")
    cfg = site_with("broker: mqtts://localhost\ntls: {ca: certs/ca.crt, cert: certs/client.crt, key: certs/client.key}",
                    tmp_path).telemetry
    context = client_options(cfg, client_id="x")["tls_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("neuroreflex-test-ca" in str(c.get("subject")) for c in context.get_ca_certs())
    certs["client_key"].unlink()
    with pytest.raises(TelemetryConnectionError, match=f"tls key file {tmp_path / 'certs/client.key'} does not exist"):
        client_options(cfg, client_id="x")


# ----------------------------------------------------------------------------- messages (pure)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def decoded(messages):
    return [(m.kind, json.loads(m.payload), m.qos, m.retain) for m in messages]


def test_features_are_rate_limited_and_the_newest_values_go_out():
    clock = FakeClock()
    tel = SessionTelemetry({"session_id": "s1", "protocol": "p"}, "lab", features_hz=2.0, feedback_hz=None,
                           mono=clock, wall=clock)
    sent = []
    for i in range(1000):  # 100 updates per second for 10 s
        clock.t = 1000.0 + i * 0.01
        sent += tel.on_events([rec.Feature("tbr", float(i)).event(clock.t), rec.Feature("emg", math.nan).event(clock.t)])
    features = [p for k, p, _, _ in decoded(sent) if k == tp.FEATURES]
    assert len(features) <= 2.0 * 10 + 1
    assert features[0]["values"] == {"tbr": 0.0, "emg": None}  # NaN is null in JSON
    assert features[-1]["values"]["tbr"] == 950.0  # the newest value when its interval had passed
    sent = tel.on_events([rec.SessionEnd("completed", {}).event(clock.t)])
    assert [k for k, *_ in decoded(sent)][-1] == tp.STATE
    for kind, payload, qos, retain in decoded(sent):
        tp.PAYLOADS[kind].model_validate(payload)
        assert qos == tp.qos(kind) and retain == (kind in tp.RETAINED)


def test_feedback_every_update_when_the_rate_is_all():
    clock = FakeClock()
    tel = SessionTelemetry({"session_id": "s1"}, "lab", features_hz=2.0, feedback_hz=None, mono=clock, wall=clock)
    sent = tel.on_events([rec.Feedback(0.25 * i, float(i), 0.002).event(1.0) for i in range(5)])
    assert [p["value"] for k, p, *_ in decoded(sent) if k == tp.FEEDBACK] == [0.0, 0.25, 0.5, 0.75, 1.0]
    sent = tel.on_events([rec.Feedback(0.9, 9.0, 0.002).event(2.0)])
    assert [(k, p["value"], q) for k, p, q, _ in decoded(sent)] == [(tp.FEEDBACK, 0.9, 0)]


def test_stimulation_safety_and_devices():
    clock = FakeClock()
    tel = SessionTelemetry({"session_id": "s1", "devices": ["tms"]}, "lab", features_hz=1.0, feedback_hz=1.0,
                           mono=clock, wall=clock)
    events = [
        rec.Command("tms", "arm", True).event(1.0),
        rec.SafetyVerdict(False, "intensity 90 % exceeds intensity_max 80 %", "tms", "fire", "intensity_max", 90.0, 80.0,
                          "rule 1").event(1.1, 1.05),
        rec.Command("tms", "fire", False, rule="rule 1", reason="refused by the governor").event(1.2),
        rec.InterlockRaised("input eeg", "stalled").event(1.3),
        rec.EStop("operator").event(1.4),
        rec.BlockStart(0, "train", None, 60.0).event(1.5),
        rec.State("running").event(1.6),
        rec.Fault("stimulation", "port closed").event(1.7),
    ]
    out = decoded(tel.on_events(events))
    for kind, payload, _, _ in out:
        tp.PAYLOADS[kind].model_validate(payload)
    stim = [p for k, p, *_ in out if k == tp.STIM]
    assert [(s["event"], s["allowed"]) for s in stim] == [("command", True), ("verdict", False), ("command", False)]
    assert stim[1]["reason"] == "intensity 90 % exceeds intensity_max 80 %" and stim[1]["limit"] == "intensity_max"
    devices = [p for k, p, *_ in out if k == tp.DEVICES]
    assert devices[0]["stimulators"]["tms"]["armed"] is True and devices[-1]["stimulators"]["tms"]["armed"] is False
    locks = [p for k, p, *_ in out if k == tp.INTERLOCKS]
    assert locks[-1]["inhibited"] == {"input eeg": "stalled"} and locks[-1]["estop"] is True
    state = [p for k, p, *_ in out if k == tp.STATE][-1]
    assert state["state"] == "running" and state["block"]["label"] == "train" and state["time_left_s"] == 60.0
    picture = {m.kind: json.loads(m.payload) for m in tel.retained()}
    assert set(picture) == {tp.IDENTITY, tp.STATE, tp.DEVICES, tp.INTERLOCKS}
    assert picture[tp.INTERLOCKS]["estop"] is True


def test_every_topic_has_a_schema():
    schemas = tp.json_schemas()
    assert set(schemas) == set(tp.PAYLOADS)
    assert schemas[tp.STATE]["x-retained"] is True and schemas[tp.FEATURES]["x-qos"] == 0
    assert schemas[tp.STATUS]["properties"]["status"]["enum"] == ["online", "offline", "ended"]
    assert tp.parse_topic("neuroreflex/lab/s1/state") == tp.TopicName("lab", "s1", "state")
    assert tp.parse_topic("other/lab/s1/state") is None


def test_schema_command_prints_the_telemetry_schemas(capsys):
    from controller.cli import main

    assert main(["schema", "--telemetry"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == set(tp.PAYLOADS) and printed["identity"]["x-topic"] == "<prefix>/<site>/<session>/identity"


def test_each_fmri_volume_goes_out_with_its_motion_roi_means_and_timing():
    clock = FakeClock()
    tel = SessionTelemetry({"session_id": "s1"}, "lab", features_hz=2.0, feedback_hz=None, mono=clock, wall=clock)
    volumes = [rec.VolumeQC(i, i - 2, "happy", 1, motion=(0.1 * i, 0, 0, 0, 0, 0.01), fd_mm=0.05 * i,
                            rois={"amygdala_l": rec.RoiValues(100.0 + i, 0.5 * i)},
                            timing_ms={"pipeline": 8.5, "delivery": None}, input="fmri").event(10.0 + 2 * i)
               for i in range(3, 6)]
    sent = [m for m in decoded(tel.on_events(volumes)) if m[0] == tp.FMRI_QC]
    assert [p["index"] for _, p, _, _ in sent] == [3, 4, 5]  # every volume, none rate-limited
    kind, payload, qos, retain = sent[-1]
    assert qos == 1 and not retain
    assert payload["fd_mm"] == 0.25 and payload["motion"][0] == 0.5 and payload["block"] == "happy"
    assert payload["rois"] == {"amygdala_l": {"raw": 105.0, "detrended": 2.5}}
    assert payload["timing_ms"] == {"pipeline": 8.5, "delivery": None}
    tp.FmriQcPayload.model_validate(payload)  # the published schema holds
