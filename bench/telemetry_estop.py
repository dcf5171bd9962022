"""Remote E-STOP over MQTT against the control channel's E-STOP: publish -> the device's disarm, same run.

A real session (``tavns``: simulated 64-channel EEG, a virtual trigger box process, armed) runs in
this process with its MQTT command subscriber (controller/telemetry/remote.py) connected as the
site's session account to a real mosquitto with TLS, passwords and the example ACL
(config/mosquitto/acl; the broker from tests/mosquitto_broker.py, certificates and passwords made
now, ``set_tcp_nodelay true`` as config/mosquitto/mosquitto.conf has it; ``--nagle``: without). The time each E-STOP takes is read where it matters: the device's own log of the disarm
(the trigger box's "low" byte, stamped on this host's monotonic clock, the LSL clock). Interleaved,
N times each, so every path sees the same load:

  mqtt         the operator's open connection (this process, another thread): publish QoS 1 ->
               device disarmed; and publish -> acknowledgement received
  mqtt CLI     `neuroreflex monitor --send SITE/SESSION estop` as a new process: spawn -> disarmed
  channel      control_channel.request("estop") from this process: call -> disarmed
  channel CLI  `neuroreflex estop` as a new process: spawn -> disarmed

    python bench/telemetry_estop.py [--n 20]

Prints median / p99 / max in ms. The broker is on loopback: a broker elsewhere adds its network's
round trip to the mqtt rows. Not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the test session's mosquitto helper: TLS, passwords, ACL

from mosquitto_broker import MISSING, Broker  # noqa: E402

from controller.operator import control_channel as cc  # noqa: E402
from controller.operator.acts import OperatorActs  # noqa: E402
from controller.session import runner  # noqa: E402
from controller.session.runner import RunOptions, SimOptions, run_session  # noqa: E402
from controller.session.stimulation import read_device_log  # noqa: E402
from controller.telemetry.config import TelemetryConfig  # noqa: E402
from controller.telemetry.monitor import client_for  # noqa: E402
from controller.telemetry.remote import RemoteCommands, Request, ack_topic, cmd_topic  # noqa: E402

SITE = "lab-a"  # the example ACL's site and accounts
USERS = ("lab-a", "monitor", "alice")


def _stats(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    ms = sorted(1000 * x for x in xs)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):8.2f}  p99 {p99:8.2f}  max {ms[-1]:8.2f} ms  (n={len(ms)})"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def _disarmed_after(logs: list[Path], t0: float) -> float | None:
    """When the last device logged its first disarm ("low") at or after t0; None if one did not in 5 s."""
    def firsts() -> list[float] | None:
        ts = [min((e["t"] for e in read_device_log(p) if e.get("type") == "command" and e.get("t", 0) >= t0
                   and str(e.get("meaning", "")).startswith("low")), default=None) for p in logs]
        return ts if all(t is not None for t in ts) else None

    try:
        return max(_wait(firsts, 5, "the disarm in the device log"))
    except RuntimeError as exc:
        print(f"  {exc}", file=sys.stderr)
        return None


class Operator:
    """An operator's open MQTT connection on its own thread and loop (as a console would keep one)."""

    def __init__(self, cfg: TelemetryConfig, session: str) -> None:
        self.cfg, self.session = cfg, session
        self.loop = asyncio.new_event_loop()
        self.acks: dict[str, float] = {}
        self.ready = threading.Event()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="operator").start()
        self.client = asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(20)

    async def _open(self):
        client = client_for(self.cfg, "bench")
        await client.__aenter__()
        await client.subscribe(ack_topic(self.cfg, self.session), qos=1)
        asyncio.get_running_loop().create_task(self._read(client))
        return client

    async def _read(self, client) -> None:
        import aiomqtt

        try:
            async for message in client.messages:
                rid = json.loads(bytes(message.payload)).get("id")
                self.acks[rid] = time.monotonic()
        except aiomqtt.MqttError:
            pass  # the broker stopped at the end of the run

    def estop(self) -> tuple[float, str]:
        """Publish an E-STOP; (monotonic time just before the publish, request id)."""
        request = Request(uuid.uuid4().hex[:12], "estop", {"reason": "bench"}, "bench")
        topic = cmd_topic(self.cfg, self.session, self.cfg.username or "")
        t0 = time.monotonic()
        asyncio.run_coroutine_threadsafe(self.client.publish(topic, request.to_json(), qos=1), self.loop).result(10)
        return t0, request.id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="E-STOPs per path")
    ap.add_argument("--nagle", action="store_true",
                    help="the broker without set_tcp_nodelay (mosquitto's default): the ack waits for a delayed ACK")
    args = ap.parse_args()
    if MISSING:
        sys.exit(MISSING)
    work = Path(tempfile.mkdtemp(prefix="nr-tel-estop-"))
    ctl = Path(tempfile.mkdtemp(prefix="nr-ctl-"))
    os.environ[cc.ENV_DIR] = str(ctl)
    env = {**os.environ}
    passwords = {u: secrets.token_urlsafe(16) for u in USERS}
    broker = Broker.secured(work / "broker", passwords, (ROOT / "config" / "mosquitto" / "acl").read_text())
    if not args.nagle:  # as config/mosquitto/mosquitto.conf
        broker.config.write_text("set_tcp_nodelay true\n" + broker.config.read_text())
    broker.start()
    for user, pw in passwords.items():
        (work / f"{user}.pw").write_text(pw + "\n")

    def cfg(user: str) -> TelemetryConfig:
        return TelemetryConfig.for_broker(broker.url, username=user, password_file=work / f"{user}.pw",
                                          ca_file=broker.certs["ca"], site=SITE)

    seen: list[OperatorActs] = []

    class SeenActs(OperatorActs):  # the session's acts, for its command subscriber
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            seen.append(self)

    runner.OperatorActs = SeenActs
    opts = RunOptions(protocol_path=ROOT / "protocols" / "tavns.yaml", session_root=work / "sessions",
                      sim=SimOptions(), site_config=ROOT / "config" / "site.yaml", arm=True, virtual_devices=True,
                      duration_s=3600, record_xdf=False, build_report=False, keyboard=False, progress=None,
                      lsl_prefix=f"bench-{uuid.uuid4().hex[:6]}")
    session = threading.Thread(target=run_session, args=(opts,), daemon=True, name="session")
    session.start()
    remote = None
    try:
        acts = _wait(lambda: seen[0] if seen and seen[0].engine is not None else None, 120, "the session")
        remote = RemoteCommands(cfg("lab-a"), acts.session_id, acts).start()
        if not remote.ready.wait(20):
            raise RuntimeError("the command subscriber did not connect")
        logs = _wait(lambda: sorted((work / "sessions").glob("*/devices/*.jsonl")), 60, "the device logs")
        time.sleep(2.0)  # under way: streams resolved, devices armed
        operator = Operator(cfg("alice"), acts.session_id)
        send = [sys.executable, "-m", "controller.cli", "monitor", "--broker", broker.url, "--tls-ca",
                str(broker.certs["ca"]), "--username", "alice", "--password-file", str(work / "alice.pw"),
                "--send", f"{SITE}/{acts.session_id}", "estop", "--reason", "bench"]
        channel_cli = [sys.executable, "-m", "controller.cli", "estop", "--reason", "bench"]
        rows: dict[str, list[float]] = {}
        cc.request("estop", {"reason": "bench warm-up", "origin": "bench"}, timeout=5.0)  # no pulse from here on:
        time.sleep(1.0)  # every later "low" in the log is an E-STOP's disarm, not a pulse's end
        print(f"session {acts.session_id} (tavns, virtual trigger box, armed); broker {broker.url} (TLS, ACL, "
              f"{'Nagle' if args.nagle else 'set_tcp_nodelay'}); n={args.n} per path, interleaved")
        for _ in range(args.n):
            t0, rid = operator.estop()
            t = _disarmed_after(logs, t0)
            if t is not None:
                rows.setdefault("mqtt: publish -> device disarmed", []).append(t - t0)
            try:
                acked = _wait(lambda rid=rid: operator.acks.get(rid), 5, "the acknowledgement")
                rows.setdefault("mqtt: publish -> acknowledgement received", []).append(acked - t0)
            except RuntimeError as exc:
                print(f"  {exc}", file=sys.stderr)
            time.sleep(0.2)

            t0 = time.monotonic()
            cc.request("estop", {"reason": "bench", "origin": "bench"}, timeout=5.0)
            t = _disarmed_after(logs, t0)
            if t is not None:
                rows.setdefault("control channel request: call -> device disarmed", []).append(t - t0)
            time.sleep(0.2)

            for name, cmd in (("`neuroreflex monitor --send ... estop`", send), ("`neuroreflex estop`", channel_cli)):
                t0 = time.monotonic()
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                if done.returncode != 0:
                    print(f"  {name} failed ({done.returncode}): {done.stderr.strip()[-300:]}", file=sys.stderr)
                    continue
                t = _disarmed_after(logs, t0)
                if t is not None:
                    rows.setdefault(f"{name}: spawn -> device disarmed", []).append(t - t0)
                time.sleep(0.2)
        for label, xs in rows.items():
            print(f"  {label:<66} {_stats(xs)}")
    finally:
        if remote is not None:
            remote.close()
        if seen and seen[0].engine is not None:
            seen[0].engine.stop("bench done")
        session.join(30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ctl, ignore_errors=True)


if __name__ == "__main__":
    main()
