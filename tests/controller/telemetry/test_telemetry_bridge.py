"""The multi-site example (config/mosquitto/bridge.conf) with two real mosquittos: a site broker bridged to a
central one. Its topic lines are used as written (the address and the certificate lines are this test's own:
plain loopback), so what the README tells a deployment to do is what is tested here: a session's retained state
published at the site reaches a monitor at the centre, and a command sent at the centre reaches the site."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mosquitto_broker import AS_USER, MISSING, Broker, free_port
from stim_session_rig import wait_for

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "")

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "mosquitto" / "bridge.conf"
KEPT = ("connection", "bridge_protocol_version", "cleansession", "try_private", "topic", "remote_clientid")


def site_broker(folder: Path, central: Broker) -> Broker:
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.split(" ", 1)[0] in KEPT]
    assert any(line.startswith("topic ") for line in lines)
    folder.mkdir(parents=True)
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(f"{AS_USER}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      + "\n".join(lines[:1] + [f"address 127.0.0.1:{central.port}"] + lines[1:]) + "\n")
    return Broker(folder, port, config).start()


def sub(broker: Broker, topic: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic, "-v",
                             "-C", str(count), "-W", "20"], stdout=subprocess.PIPE, text=True)


def pub(broker: Broker, topic: str, message: str, retain: bool = False) -> None:
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", topic,
                    "-m", message, *(["-r"] if retain else [])], check=True)


def test_the_example_bridge_forwards_a_sites_sessions_out_and_their_commands_in(tmp_path):
    central = Broker.plain(tmp_path / "central").start()
    site = site_broker(tmp_path / "site", central)
    try:
        wait_for(lambda: "lab-a-bridge" in central.log() or "New client connected" in central.log(), 20,
                 "the bridge to connect")
        pub(site, "neuroreflex/lab-a/s1/status", "online", retain=True)
        pub(site, "neuroreflex/lab-b/s9/status", "online", retain=True)  # another site's topic: not this bridge's
        watch = sub(central, "neuroreflex/#", 1)
        out, _ = watch.communicate(timeout=30)
        assert out.strip() == "neuroreflex/lab-a/s1/status online"  # retained, at the centre; lab-b stayed home

        commands = sub(site, "neuroreflex/lab-a/+/cmd/+", 1)
        for _ in range(50):  # until the site's subscriber is in place, the command is resent (QoS 1, not retained)
            pub(central, "neuroreflex/lab-a/s1/cmd/alice", '{"id": "r1", "cmd": "pause"}')
            try:
                out, _ = commands.communicate(timeout=0.4)
                break
            except subprocess.TimeoutExpired:
                continue
        assert out.strip() == 'neuroreflex/lab-a/s1/cmd/alice {"id": "r1", "cmd": "pause"}'
    finally:
        site.stop()
        central.stop()
