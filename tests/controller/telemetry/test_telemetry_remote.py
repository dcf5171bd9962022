"""Remote commands and the monitor against a real mosquitto configured as config/mosquitto/ says.

The broker (tests/mosquitto_broker.py) runs with TLS, a password file and the repository's example
ACL itself (config/mosquitto/acl): the accounts are the example's (``lab-a`` for the site's sessions,
``monitor``, the operator ``alice``) with passwords generated here. A stimulation session (LSL input of
our own, a virtual trigger box process: tests/stim_session_rig.py) runs with its command subscriber
connected as ``lab-a``; the monitor and the command sender are the real ``neuroreflex monitor``.

What is shown: the broker turns away a wrong password and a client without TLS; the ACL refuses a
monitor's command (PUBACK "not authorized", visible in the sender's error) and the session never
sees it; an operator's pause is acknowledged, carried out and journaled with the broker's name for
the sender; ``arm`` is refused by design; a remote E-STOP disarms the device (its own log says so).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import pytest
from mosquitto_broker import MISSING, Broker
from stim_session_rig import (
    ControlDir,
    SignalSource,
    device_log,
    pulses_in,
    start_device,
    start_session,
    unique,
    wait_for,
    write_files,
)

from controller import cli
from controller.operator.acts import OperatorActs
from controller.session import runner
from controller.telemetry.config import TelemetryConfig
from controller.telemetry.monitor import Board, client_for
from controller.telemetry.remote import RemoteCommands

pytestmark = [pytest.mark.skipif(MISSING is not None, reason=MISSING or ""), pytest.mark.lsl, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ACL = ROOT / "config" / "mosquitto" / "acl"
SITE_NAME = "lab-a"  # the example ACL's site
ROLES = ("lab-a", "monitor", "alice")  # session publisher, monitor, operator: the example ACL's accounts

PROTOCOL = """
protocol: remote-tavns
inputs:
  eeg:
    stream: {{name: {stream}}}
    channels: [Cz, Fp1, Fp2]
    stall: 500 ms
features:
  amp: {{peak_to_peak: {{input: eeg, channels: [Cz], window: 200 ms, every: 50 ms}}}}
thresholds:
  thr: {{fixed: 50 uV}}
timeline: [{{rest: 1 s}}, {{stim: 90 s}}]   # 90 s: only a hang guard, the test skips to the end
devices:
  tavns: {{current: 0.5 mA, pulse_width: 250 us, phases: 2, frequency: 20 Hz, pulses: {pulses}}}
rules:
  - during: stim
    when: amp > thr
    refractory: 1 s
    do: {{stimulate: {{device: tavns}}}}
"""

SITE = """
site: lab-a
timezone: UTC
max_loop_latency: 50 ms   # generous on purpose: a loaded CI machine must not trip the latency interlock
input_stall: 1 s
devices:
  tavns:
    driver: triggerbox
    port: {port}
    fixed_settings: {{current: 0.5 mA, pulse_width: 250 us, phases: 2}}
    limits:
      current_max: 5 mA
      frequency_max: 25 Hz
      pulse_width_max: 500 us
      pulses_per_session_max: 2000
      pulses_per_day_max: 10000
telemetry:                # the session's publisher (controller/telemetry/publisher.py), as the site's account
  broker: {broker}
  tls: {{ca: {ca}}}
  username: lab-a
  password_file: {password_file}
"""


# --------------------------------------------------------------------------- the broker and its accounts


class Accounts:
    """The broker and a password file per example account (generated now, never in the repository)."""

    def __init__(self, folder: Path) -> None:
        self.passwords = {user: secrets.token_urlsafe(16) for user in ROLES}
        self.broker = Broker.secured(folder, users=self.passwords, acl=ACL.read_text()).start()
        self.files = {}
        for user, password in self.passwords.items():
            path = folder / f"{user}.password"
            path.write_text(password + "\n")
            path.chmod(0o600)
            self.files[user] = path

    def config(self, user: str) -> TelemetryConfig:
        return TelemetryConfig.for_broker(self.broker.url, username=user, password_file=self.files[user],
                                          ca_file=self.broker.certs["ca"], site=SITE_NAME)

    def monitor_args(self, user: str, password_file: Path | None = None) -> list[str]:
        return ["monitor", "--broker", self.broker.url, "--tls-ca", str(self.broker.certs["ca"]),
                "--username", user, "--password-file", str(password_file or self.files[user])]


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    acc = Accounts(tmp_path_factory.mktemp("mosquitto"))
    yield acc
    acc.broker.stop()


def columns(line: str) -> dict[str, str]:
    """A row of the monitor's table, by column (fixed widths, one space apart)."""
    out, at = {}, 0
    for name, width in zip(Board.COLUMNS, Board.WIDTHS, strict=True):
        out[name] = line[at:at + width].strip()
        at += width + 1
    return out


def run_cli(capsys, args: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- the broker turns clients away


def test_the_example_broker_config_is_tls_only_with_passwords_and_the_acl():
    conf = (ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text()
    lines = [line.split("#")[0].strip() for line in conf.splitlines()]
    lines = [line for line in lines if line]
    assert "allow_anonymous false" in lines
    assert "set_tcp_nodelay true" in lines  # an E-STOP's acknowledgement does not wait 40 ms for a delayed ACK
    assert [line for line in lines if line.startswith("listener")] == ["listener 8883"]  # no plain listener
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile"):
        assert any(line.startswith(key + " ") for line in lines), key


def test_a_wrong_password_is_refused_by_the_broker(accounts, capsys, tmp_path):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-" + accounts.passwords["monitor"] + "\n")
    code, _, err = run_cli(capsys, [*accounts.monitor_args("monitor", wrong), "--once", "2"])
    assert code == 1
    assert "the broker refused the connection" in err and "not authorized" in err.lower()
    assert "not authorised" in accounts.broker.log()  # the broker's side of it


def test_a_client_without_tls_is_refused(accounts):
    import aiomqtt

    async def plain() -> None:
        async with aiomqtt.Client("127.0.0.1", accounts.broker.port, username="monitor",
                                  password=accounts.passwords["monitor"], timeout=3):
            pass

    with pytest.raises(aiomqtt.MqttError):  # the right password, but in clear text on the TLS listener
        asyncio.run(plain())
    wait_for(lambda: "wrong version number" in accounts.broker.log(), 5, "the broker's TLS refusal in its log")


def test_the_monitor_shows_the_sessions_of_every_site_and_alerts(accounts, capsys):
    """What a supervising room sees: a session's retained state from the table, a fault and the
    last will as ALERT lines (published here as a session would, with the session account)."""
    import aiomqtt

    from controller.telemetry.connection import client_options

    session = unique("mon")

    async def publish(kinds: list[tuple[str, dict, bool]]) -> None:
        async with aiomqtt.Client(**client_options(accounts.config("lab-a"), client_id=unique("pub"))) as c:
            for kind, data, retain in kinds:
                await c.publish(f"neuroreflex/lab-a/{session}/{kind}", json.dumps(data), qos=1, retain=retain)

    asyncio.run(publish([
        ("status", {"status": "online", "session": session, "site": "lab-a"}, True),
        ("identity", {"session": session, "site": "lab-a", "protocol": "remote-tavns"}, True),
        ("state", {"state": "running", "block": {"index": 1, "label": "stim"}}, True),
        ("devices", {"stimulators": {"tavns": {"armed": True}}, "inputs": {"eeg": {"status": "connected"}}}, True),
    ]))
    import threading

    def later() -> None:
        time.sleep(1.0)
        asyncio.run(publish([("fault", {"source": "tavns", "reason": "no reply"}, False),
                             ("status", {"status": "offline", "session": session, "site": "lab-a"}, True)]))

    thread = threading.Thread(target=later)
    thread.start()
    code, out, err = run_cli(capsys, [*accounts.monitor_args("monitor"), "--once", "3"])
    thread.join()
    assert code == 0, err
    row = columns(next(line for line in out.splitlines() if session in line and not line.startswith("ALERT")))
    assert row == {"SITE": "lab-a", "SESSION": session, "STATUS": "offline", "PROTOCOL": "remote-tavns",
                   "STATE": "running", "BLOCK": "stim", "FEEDBACK": "", "SIGNAL": "eeg connected", "ARMED": "tavns",
                   "INTERLOCKS": "-", "LAST FAULT": "tavns: no reply"}
    assert f"lab-a/{session} fault: tavns: no reply" in out
    assert f"lab-a/{session} offline" in out


# --------------------------------------------------------------------------- a running session


@pytest.fixture
def control_dir(monkeypatch):
    d = ControlDir.create(monkeypatch)
    yield d
    d.remove()


@pytest.fixture
def box(tmp_path):
    dev = start_device(tmp_path, "tavns", "triggerbox")
    yield dev
    dev.stop()


@pytest.fixture
def source():
    src = SignalSource(unique("remote-eeg"), mode="off").start()
    yield src
    src.kill()


class Remote:
    """A running stimulation session with its command subscriber connected as the site's session account."""

    def __init__(self, monkeypatch, tmp_path: Path, accounts: Accounts, source: SignalSource, box, pulses: int) -> None:
        seen: list[OperatorActs] = []

        class SeenActs(OperatorActs):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                seen.append(self)

        monkeypatch.setattr(runner, "OperatorActs", SeenActs)
        started: list[RemoteCommands] = []
        start = RemoteCommands.start

        def seen_start(remote: RemoteCommands) -> RemoteCommands:
            started.append(remote)
            return start(remote)

        monkeypatch.setattr(RemoteCommands, "start", seen_start)
        site_text = SITE.format(port=box.port, broker=accounts.broker.url, ca=accounts.broker.certs["ca"],
                                password_file=accounts.files["lab-a"])
        protocol, site = write_files(tmp_path, PROTOCOL.format(stream=source.name, pulses=pulses), site_text)
        self.live = start_session(monkeypatch, tmp_path / "sessions", protocol, site)
        self.live.wait_running()
        wait_for(lambda: self.live.engine.snapshot()["state"] == "running", 30, "the engine to run")
        self.acts = seen[0]
        self.session = self.acts.session_id
        # the session's own subscriber when the runner starts one for a site with telemetry; until it does, ours
        self.remote = started[0] if started else RemoteCommands(accounts.config("lab-a"), self.session, self.acts).start()
        assert self.remote.ready.wait(15), "the command subscriber did not connect"

    def operator_acts(self) -> list[dict]:
        return self.live.events("operator")


@pytest.fixture
def session(monkeypatch, tmp_path, accounts, control_dir, box, source, request):
    remote = Remote(monkeypatch, tmp_path, accounts, source, box, getattr(request, "param", 5))
    yield remote
    remote.remote.close()
    if remote.live.thread.is_alive():  # a failed test: the session ends before its device process does
        remote.live.abort()


def send(capsys, accounts: Accounts, user: str, session: str, *args: str) -> tuple[int, str, str]:
    """``neuroreflex monitor --send`` (SESSION alone: the sender finds its site from the retained status)."""
    return run_cli(capsys, [*accounts.monitor_args(user), "--send", session, *args, "--timeout", "10"])


def ack_of(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def test_commands_from_a_monitor_are_refused_by_the_broker_and_an_operators_are_carried_out(
        session, accounts, capsys):
    live = session.live

    # a monitor account: the broker answers the publish "not authorized"; the session hears nothing
    code, out, err = send(capsys, accounts, "monitor", session.session, "pause", "--reason", "from the monitor")
    assert code == 1
    assert "the broker refused the command" in err and "Not authorized" in err
    assert "monitor" in err and "cmd/monitor" in err

    # the operator: acknowledged with the request id, carried out, journaled with the broker's name
    code, out, err = send(capsys, accounts, "alice", session.session, "pause", "--reason", "check electrodes",
                          "--by", "Dr. A")
    assert code == 0, err
    ack = ack_of(out)
    assert ack["ok"] is True and ack["cmd"] == "pause" and ack["user"] == "alice" and ack["result"] == {"done": True}
    assert ack["id"] in out.splitlines()[0]  # the request id the sender printed is the one acknowledged
    wait_for(lambda: live.engine.snapshot()["state"] == "paused", 10, "the engine to pause")
    pause = wait_for(lambda: [e for e in session.operator_acts() if e["data"]["act"] == "pause"], 10, "the journal")
    assert pause[0]["data"]["by"] == "alice"
    assert pause[0]["data"]["via"] == "remote (Dr. A, mqtt user alice)"
    assert pause[0]["data"]["reason"] == "check electrodes" and pause[0]["data"]["done"] is True
    # nothing of the monitor's attempt reached the session: one request in all, the operator's
    assert session.remote.handled == 1 and session.remote.refused == 0
    assert [e["data"]["act"] for e in session.operator_acts()] == ["pause"]

    # the monitor's table shows it, from the session's own telemetry
    code, out, err = run_cli(capsys, [*accounts.monitor_args("monitor"), "--once", "2"])
    row = columns(next(line for line in out.splitlines() if session.session in line))
    assert (row["SITE"], row["STATUS"], row["PROTOCOL"], row["STATE"]) == ("lab-a", "online", "remote-tavns", "paused")
    assert row["ARMED"] == "tavns" and row["SIGNAL"].startswith("eeg ")  # the input's last status

    code, out, err = send(capsys, accounts, "alice", session.session, "resume")
    assert code == 0, err
    wait_for(lambda: live.engine.snapshot()["state"] == "running", 10, "the engine to resume")

    code, out, err = send(capsys, accounts, "alice", session.session, "note", "--text", "electrode Cz re-gelled")
    assert code == 0 and ack_of(out)["result"] == {"noted": "electrode Cz re-gelled"}

    # arming is not a remote act, whoever asks: refused in the ack, journaled as an attempt, nothing armed
    armed_before = live.status()["devices"]["tavns"]["armed"]
    code, out, err = send(capsys, accounts, "alice", session.session, "arm")
    assert code == 1
    ack = ack_of(out)
    assert ack["ok"] is False and "arming stays an act at the console" in ack["error"]
    attempt = wait_for(lambda: [e for e in session.operator_acts() if e["data"]["act"] == "arm"], 10, "the attempt")
    assert attempt[0]["data"]["done"] is False and attempt[0]["data"]["by"] == "alice"
    assert live.status()["devices"]["tavns"]["armed"] is armed_before

    # an operator cannot speak for another account: the ACL lets alice write cmd/alice only
    async def as_bob() -> object:
        async with client_for(accounts.config("alice"), "impostor") as c:
            payload = json.dumps({"id": "x1", "cmd": "stop", "by": "bob"})
            await c.publish(f"neuroreflex/lab-a/{session.session}/cmd/bob", payload, qos=1)
            return c.puback

    puback = asyncio.run(as_bob())
    assert puback is not None and puback.is_failure and "not authorized" in str(puback).lower()

    # malformed requests and unknown commands: refused in the ack, nothing done
    async def raw(payloads: list[bytes]) -> list[dict]:
        async with client_for(accounts.config("alice"), "raw") as c:
            await c.subscribe(f"neuroreflex/lab-a/{session.session}/ack", qos=1)
            for p in payloads:
                await c.publish(f"neuroreflex/lab-a/{session.session}/cmd/alice", p, qos=1)
            acks = []
            async for m in c.messages:
                acks.append(json.loads(bytes(m.payload)))
                if len(acks) == len(payloads):
                    return acks
            return acks

    acks = asyncio.run(asyncio.wait_for(raw([b"{not json", b'{"cmd": "stop"}', b'{"id": "u1", "cmd": "skip"}',
                                             b'{"id": "u2", "cmd": "clear_estop"}']), 15))
    errors = {a["id"]: a["error"] for a in acks}
    assert all(a["ok"] is False for a in acks)
    assert "not JSON" in errors[None] or "no request id" in errors[None]
    assert sum(1 for a in acks if a["id"] is None) == 2
    assert "unknown command 'skip'" in errors["u1"]
    assert "lifting an E-STOP stays an act at the console" in errors["u2"]
    assert live.engine.snapshot()["state"] == "running"  # the stop without an id did nothing
    live.finish()


@pytest.mark.parametrize("session", [200], indirect=True)  # a 10 s train at 20 Hz: under way when the E-STOP comes
def test_a_remote_estop_disarms_the_device_at_once(session, accounts, capsys, source, box):
    live = session.live
    live.wait_block("stim")
    source.mode = "on"
    wait_for(lambda: len(pulses_in(device_log(box))) >= 3, 30, "the train to be under way")
    code, out, err = send(capsys, accounts, "alice", session.session, "estop", "--reason", "seen from room 2")
    assert code == 0, err
    ack = ack_of(out)
    assert ack["ok"] is True and ack["result"]["estopped"] is True and ack["result"]["disarmed"] == ["tavns"]
    status = live.status()
    assert status["devices"]["tavns"]["armed"] is False and "estop" in status["interlocks"]
    source.mode = "off"

    estop = wait_for(lambda: live.events("safety", what="estop"), 10, "the E-STOP in the journal")
    assert "seen from room 2" in estop[0]["data"]["reason"] and "alice" in estop[0]["data"]["reason"]
    act = [e for e in session.operator_acts() if e["data"]["act"] == "estop"]
    assert act and act[0]["data"]["by"] == "alice" and act[0]["data"]["via"].startswith("remote (")
    disarm = [e for e in live.events("command", device="tavns", kind="disarm", ok=True) if "E-STOP" in e["data"]["rule"]]
    assert disarm
    result = live.finish()
    assert result.status == "completed"
    # the device's own log: the line went low at the disarm, and no pulse rose after it
    log = device_log(box)
    t_disarm = disarm[0]["data"]["t_sent"]
    first_low = next(i for i, e in enumerate(log) if e.get("type") == "command"
                     and str(e.get("meaning", "")).startswith("low") and e["t"] >= t_disarm)
    rises = [i for i, e in enumerate(log) if e.get("type") == "command"
             and str(e.get("meaning", "")).startswith("pulse code")]
    assert rises and all(i < first_low for i in rises) and len(rises) < 200
