"""Every ``neuroreflex`` sub-command's happy path through ``controller.cli.main([...])``, argument
parsing included (issue 9: the README's main command had crashed in its parser while 977 tests passed).

``test_every_command_has_a_happy_path_here`` fails when a command is added without a test here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from test_cli import SHORT  # the same short protocol the subprocess CLI tests run

from controller.cli import DEMO_LEARNING_RATE, build_parser, main
from controller.session.args import DEFAULT_SITE, SessionArgs

ROOT = Path(__file__).resolve().parents[2]


COVERED = {"validate", "schema", "sim", "run", "demo", "report", "display", "console", "monitor", "estop", "status",
           "arm", "disarm"}



@pytest.fixture
def cdir():
    d = Path(tempfile.mkdtemp(prefix="nr-cli-"))  # short: AF_UNIX paths are limited to 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _subcommands() -> set[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(sub.choices)


def test_every_command_has_a_happy_path_here():
    assert _subcommands() == COVERED


# --- one typed options object for run and demo --------------------------------------------------


def test_demo_parses_into_complete_session_args_with_its_fixed_values():
    s = SessionArgs.from_namespace(build_parser().parse_args(["demo"]))
    assert s.protocol.name == "tbr_demo.yaml" and s.protocol.is_file()
    assert s.sim and not s.arm and not s.hardware and s.run is None
    assert s.learning_rate == DEMO_LEARNING_RATE
    assert s.site_config() == DEFAULT_SITE  # simulated: the example site's limits, as for run --sim
    opts = s.to_run_options()
    assert opts.sim is not None and opts.sim.learning_rate == DEMO_LEARNING_RATE
    assert opts.session_root == Path("sessions") and opts.build_report


def test_run_and_demo_share_every_session_option():
    common = ["--duration", "7", "--session-dir", "here", "--no-report", "--site", "s.yaml", "--operator", "ana",
              "--participant", "p01", "--channels", "8", "--rate", "250", "--chunk", "4", "--seed", "3",
              "--replay-start", "10", "--replay-speed", "2", "--respiration"]
    demo = SessionArgs.from_namespace(build_parser().parse_args(["demo", *common]))
    run = SessionArgs.from_namespace(build_parser().parse_args(["run", "p.yaml", "--sim", *common]))
    for name in ("duration", "session_dir", "no_report", "site", "operator", "participant", "channels", "rate",
                 "chunk", "seed", "replay_start", "replay_speed", "respiration"):
        assert getattr(demo, name) == getattr(run, name), name
    assert demo.to_run_options().sim.extra_args == run.to_run_options().sim.extra_args \
        == ["--respiration", "--start", "10", "--speed", "2"]


def test_the_demo_default_does_not_leak_into_run():
    run = SessionArgs.from_namespace(build_parser().parse_args(["run", "p.yaml"]))
    assert run.learning_rate is None and not run.sim and run.site_config() is None
    assert run.to_run_options().sim is None


def test_a_parser_that_forgets_a_session_option_is_named():
    ns = build_parser().parse_args(["demo"])
    del ns.participant
    with pytest.raises(TypeError, match="'demo' parser declares no participant"):
        SessionArgs.from_namespace(ns)


# --- the happy path of each command -----------------------------------------------------------------


def test_validate(capsys):
    assert main(["validate", str(ROOT / "protocols" / "tbr_adhd.yaml")]) == 0
    assert "valid protocol 'tbr-adhd'" in capsys.readouterr().out


def test_validate_with_site(capsys):
    assert main(["validate", str(ROOT / "protocols" / "tacs.yaml"), "--site", str(DEFAULT_SITE)]) == 0
    assert "within the limits of site" in capsys.readouterr().out


def test_schema(capsys):
    assert main(["schema"]) == 0
    assert {"protocol", "inputs", "timeline"} <= set(json.loads(capsys.readouterr().out)["properties"])


@pytest.mark.lsl
def test_sim_eeg(capsys):
    assert main(["sim", "eeg", "--channels", "8", "--rate", "250", "--duration", "1",
                 "--name", f"cli-main-{uuid.uuid4().hex[:6]}"]) == 0
    assert "8 ch @ 250 Hz" in capsys.readouterr().out


@pytest.mark.lsl
@pytest.mark.slow
def test_run_then_report(tmp_path, capsys):
    protocol = tmp_path / "short.yaml"
    protocol.write_text(SHORT)
    sessions = tmp_path / "s"
    assert main(["run", str(protocol), "--sim", "--channels", "8", "--rate", "250", "--session-dir", str(sessions),
                 "--no-report", "--participant", "p01", "--operator", "ana"]) == 0
    out = capsys.readouterr().out
    [session] = list(sessions.iterdir())
    assert f"session completed: {session}" in out
    assert not (session / "report").exists()
    assert main(["report", str(session)]) == 0
    assert f"report: {session / 'report' / 'report.html'}" in capsys.readouterr().out
    assert (session / "report" / "report.html").is_file()


@pytest.mark.lsl
@pytest.mark.slow
def test_demo_runs_and_prints_its_report(tmp_path, capsys):
    sessions = tmp_path / "sessions"
    assert main(["demo", "--duration", "25", "--session-dir", str(sessions)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("neuroreflex demo:")
    [session] = list(sessions.iterdir())
    assert f"session stopped: {session}" in out
    report = session / "report" / "report.html"
    assert f"report: {report}" in out and report.is_file()
    assert (session / "recording.xdf").stat().st_size > 0


@pytest.mark.lsl
@pytest.mark.slow
def test_display(tmp_path, monkeypatch):
    import pylsl

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    prefix = f"cli-main-{uuid.uuid4().hex[:6]}"
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(f"{prefix}-markers", "Markers", 1, 0, "string", prefix + "m"))
    feedback = pylsl.StreamOutlet(pylsl.StreamInfo(f"{prefix}-feedback", "Feedback", 2, 0, "double64", prefix + "f"))
    png = tmp_path / "thermometer.png"

    def feed() -> None:
        if markers.wait_for_consumers(30) and feedback.wait_for_consumers(30):
            markers.push_sample(["block_start:happy"])
            feedback.push_sample([0.8, 1.6])

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    assert main(["display", "thermometer", "--prefix", prefix, "--target", "0.5", "--size", "320x240",
                 "--quit-after", "4", "--screenshot", str(png)]) == 0
    t.join(5)
    assert png.stat().st_size > 1000


def test_console(monkeypatch, capsys, cdir):
    """The console opens with a protocol chosen and validated, draws, and closes by itself (--exit-after)."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setenv("NEUROREFLEX_CONTROL_DIR", str(cdir))
    assert main(["console", "--protocol", str(ROOT / "protocols" / "tbr_demo.yaml"), "--operator", "ana",
                 "--participant", "p01", "--exit-after", "1.5", "--size", "800x600"]) == 0
    frames = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert frames[0] == "frames" and int(frames[1]) > 0


def test_monitor(tmp_path, capsys):
    """The monitor lists a session from its retained messages on a real broker (`--once`: the table, then exit)."""
    import subprocess

    from mosquitto_broker import MISSING, Broker

    if MISSING:
        pytest.skip(MISSING)
    broker = Broker.plain(tmp_path / "broker").start()
    try:
        for kind, payload in (("status", "online"), ("identity", json.dumps({"session": "s1", "site": "lab",
                                                                             "protocol": "tbr-demo", "started": 0}))):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-r", "-q", "1",
                            "-t", f"neuroreflex/lab/s1/{kind}", "-m", payload], check=True)
        assert main(["monitor", "--broker", broker.url, "--once", "1.5"]) == 0
    finally:
        broker.stop()
    out = capsys.readouterr().out
    assert "s1" in out and "tbr-demo" in out and "lab" in out


class _Session:
    """What a running session's control channel answers (controller.operator.control_channel's handler)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, name: str, args: dict) -> dict:
        self.calls.append((name, args))
        if name == "status":
            return {"state": "running", "armed": ["tacs"], "interlocks": []}
        if name == "arm":
            return {"ok": True, "message": f"armed {args['device']} by {args['operator']}"}
        return {"message": f"{name} done"}


def test_estop_status_arm_disarm(cdir, capsys):
    from controller.operator.control_channel import ControlListener

    handler = _Session()
    with ControlListener("s1", handler, cdir):
        assert main(["status", "--dir", str(cdir)]) == 0
        assert "session s1" in capsys.readouterr().out
        assert main(["arm", "tacs", "--operator", "ana", "--dir", str(cdir)]) == 0
        assert "armed tacs by ana" in capsys.readouterr().out
        assert main(["disarm", "tacs", "--dir", str(cdir), "--reason", "end of test"]) == 0
        assert main(["estop", "--dir", str(cdir), "--reason", "cli test"]) == 0
        assert "session s1: acknowledged" in capsys.readouterr().out
    assert [c[0] for c in handler.calls] == ["status", "arm", "disarm", "estop"]
    assert handler.calls[2][1]["reason"] == "end of test" and handler.calls[3][1]["reason"] == "cli test"
