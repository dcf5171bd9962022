"""The operator control channel over real UNIX sockets, and `neuroreflex estop/status/arm` as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from controller.operator import control_channel as cc
from controller.operator.control_channel import ControlError, ControlListener

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cdir():
    d = Path(tempfile.mkdtemp(prefix="nr-ctl-"))  # short: AF_UNIX paths are limited to 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Recorder:
    """A runner-like handler: records calls; status/arm can be made to wait or fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.called = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail: set[str] = set()

    def __call__(self, name: str, args: dict) -> dict:
        self.calls.append((name, args))
        self.called.set()
        if name in self.fail:
            raise RuntimeError(f"{name} broke")
        if name == cc.STATUS:
            assert self.release.wait(30)
            return {"state": "running", "armed": ["tacs"], "interlocks": []}
        if name == cc.ARM:
            return {"ok": args["device"] == "tacs", "message": f"armed {args['device']} by {args['operator']}"}
        return {"message": f"{name} done", "disarmed": ["tacs"]}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, **(env or {})})


# --- where sockets live -------------------------------------------------------------------------


def test_runtime_dir_follows_xdg_and_is_private(monkeypatch, cdir):
    monkeypatch.delenv(cc.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(cdir))
    assert cc.runtime_dir() == cdir / "neuroreflex"
    assert cc.candidate_dirs()[0] == cdir / "neuroreflex"
    assert Path(f"/tmp/neuroreflex-{os.geteuid()}") in cc.candidate_dirs()  # found from an ssh shell too
    with ControlListener("s1", Recorder()) as listener:
        assert listener.path == cdir / "neuroreflex" / "s1.sock"
        assert stat.S_IMODE(os.stat(cdir / "neuroreflex").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(listener.path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.stat(listener.path).st_mode)
    assert not listener.path.exists()  # removed on close
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert cc.runtime_dir() == Path(f"/tmp/neuroreflex-{os.geteuid()}")


def test_unsafe_directories_are_refused(cdir):
    loose = cdir / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    with pytest.raises(ControlError, match="open to other users"):
        cc.check_private_dir(loose)
    cc.ensure_private_dir(loose)  # ours: tightened
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700
    link = cdir / "link"
    link.symlink_to(loose)
    with pytest.raises(ControlError, match="not a plain directory"):
        ControlListener("s1", Recorder(), link).start()
    problems: list[str] = []
    assert cc.find_sockets([link], problems) == [] and "not a plain directory" in problems[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_a_directory_of_another_user_is_refused(cdir):
    other = cdir / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 12345, 12345)
    with pytest.raises(ControlError, match="belongs to uid 12345"):
        ControlListener("s1", Recorder(), other).start()


def test_bad_session_ids_and_long_paths_are_clear_errors(cdir):
    with pytest.raises(ControlError, match="session id"):
        cc.socket_path("../evil", cdir)
    with pytest.raises(ControlError, match="too long for a UNIX socket path"):
        cc.socket_path("s1", cdir / ("x" * 120))


# --- requests and replies -----------------------------------------------------------------------


def test_estop_reaches_the_handler_with_reason_origin_and_peer(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir) as listener:
        [r] = cc.send([listener.path], cc.ESTOP, {"reason": "smoke", "origin": cc.origin()})
    assert r.ok and r.session == "s1" and r.result == {"message": "estop done", "disarmed": ["tacs"]}
    assert r.rtt_s is not None and r.rtt_s >= 0 and r.handler_delay_s is not None
    name, args = h.calls[0]
    assert name == "estop" and args["reason"] == "smoke" and f"pid {os.getpid()}" in args["origin"]
    if hasattr(socket, "SO_PEERCRED"):
        assert args["peer"] == {"pid": os.getpid(), "uid": os.geteuid()}


def test_status_and_arm_go_through_and_a_refusal_is_reported(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir) as listener:
        [st] = cc.send([listener.path], cc.STATUS)
        [ok] = cc.send([listener.path], cc.ARM, {"device": "tacs", "operator": "ana"})
        [no] = cc.send([listener.path], cc.ARM, {"device": "magstim", "operator": "ana"})
        [anon] = cc.send([listener.path], cc.ARM, {"device": "tacs"})
    assert st.ok and st.result["armed"] == ["tacs"]
    assert ok.ok and ok.result["ok"] is True
    assert no.ok and no.result["ok"] is False  # delivered; the runner refused
    assert not anon.ok and "operator" in anon.error
    assert [c[0] for c in h.calls] == ["status", "arm", "arm"]  # the nameless arm never reached it


def test_a_failing_handler_gives_an_error_reply_and_the_listener_survives(cdir):
    h = Recorder()
    h.fail = {cc.ESTOP, cc.STATUS}
    errors: list[str] = []
    with ControlListener("s1", h, cdir, on_error=errors.append) as listener:
        [r1] = cc.send([listener.path], cc.ESTOP, {"reason": "x"})
        [r2] = cc.send([listener.path], cc.STATUS)
        h.fail = set()
        [r3] = cc.send([listener.path], cc.ESTOP, {"reason": "y"})
    assert not r1.ok and "RuntimeError: estop broke" in r1.error
    assert not r2.ok and "RuntimeError: status broke" in r2.error
    assert r3.ok
    assert len(errors) == 2 and "estop handler failed" in errors[0]


@pytest.mark.parametrize("payload, expected", [
    (b"not json\n", "not a JSON line"),
    (b'{"cmd": "launch"}\n', "unknown command 'launch': valid are estop, status, arm, disarm"),
    (b'{"cmd": "estop", "args": []}\n', "args must be a JSON object"),
    (b'{"cmd": "disarm", "args": {}}\n', "a device name is needed"),
    (b'{"cmd": "estop", "args": {"reason": "' + b"x" * 600 + b'"}}\n', "at most 500 characters"),
    (b'{"cmd": "estop", "args": {"reason": "' + b"x" * 5000, "longer than 4096 bytes"),
])
def test_bad_requests_get_an_error_naming_the_problem_and_reach_no_handler(cdir, payload, expected):
    h = Recorder()
    with ControlListener("s1", h, cdir) as listener:
        reply = _raw(listener.path, payload)
    assert reply["ok"] is False and expected in reply["error"]
    assert h.calls == []


def _raw(path: Path, payload: bytes, shut: bool = False) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def test_a_request_without_newline_ended_by_shutdown_is_taken(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir) as listener:
        reply = _raw(listener.path, b'{"cmd": "estop"}', shut=True)
    assert reply["ok"] and h.calls[0][0] == "estop"


def test_a_peer_of_another_uid_is_refused(cdir):
    h = Recorder()
    errors: list[str] = []
    listener = ControlListener("s1", h, cdir, on_error=errors.append)
    if not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("no SO_PEERCRED on this OS: only the file permissions guard the socket")
    listener._allowed_uid = os.geteuid() + 1  # as if we were someone else
    with listener:
        [r] = cc.send([listener.path], cc.ESTOP)
    assert not r.ok and "permission denied" in r.error
    assert h.calls == [] and "refused a connection from uid" in errors[0]


# --- nobody can hold up an E-STOP ----------------------------------------------------------------


def test_silent_and_partial_clients_do_not_delay_an_estop(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir, max_open=4) as listener:
        idle = []
        for i in range(10):  # more than max_open: the oldest are dropped, never the newcomer
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(listener.path))
            if i % 2:
                s.sendall(b'{"cmd": "est')  # half a line, then nothing
            idle.append(s)
        [r] = cc.send([listener.path], cc.ESTOP, {"reason": "through the crowd"}, timeout=10)
        for s in idle:
            s.close()
    assert r.ok and h.calls == [("estop", {"reason": "through the crowd", **_peer()})]


def _peer() -> dict:
    return {"peer": {"pid": os.getpid(), "uid": os.geteuid()}} if hasattr(socket, "SO_PEERCRED") else {}


def test_a_slow_status_does_not_delay_an_estop(cdir):
    h = Recorder()
    h.release.clear()  # status hangs in the runner
    with ControlListener("s1", h, cdir) as listener:
        out: list = []
        t = threading.Thread(target=lambda: out.extend(cc.send([listener.path], cc.STATUS, timeout=30)))
        t.start()
        assert h.called.wait(10)
        [r] = cc.send([listener.path], cc.ESTOP, {"reason": "while status hangs"}, timeout=10)
        assert r.ok  # answered while status is still stuck
        h.release.set()
        t.join(10)
    assert out[0].ok


def test_a_client_that_never_reads_its_reply_does_not_stall_the_listener(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir) as listener:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(listener.path))
        s.sendall(b'{"cmd": "estop"}\n')  # and never reads
        [r] = cc.send([listener.path], cc.ESTOP, timeout=10)
        s.close()
    assert r.ok and len(h.calls) == 2


# --- discovery and stale sockets -----------------------------------------------------------------


def _dead_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what a killed session leaves


def test_stale_sockets_are_detected_and_removed(cdir):
    _dead_socket(cdir / "dead1.sock")
    _dead_socket(cdir / "dead2.sock")
    h = Recorder()
    with ControlListener("live", h, cdir) as listener:  # cleans up on start
        assert listener.removed_stale == [cdir / "dead1.sock", cdir / "dead2.sock"]
        assert cc.find_sockets([cdir]) == [listener.path]
        _dead_socket(cdir / "dead3.sock")  # dies while we run
        replies = cc.request(cc.ESTOP, {"reason": "all"}, directories=[cdir])
    by = {r.session: r for r in replies}
    assert by["live"].ok and by["dead3"].stale and not (cdir / "dead3.sock").exists()


def test_a_second_live_session_with_the_same_id_is_refused(cdir):
    with ControlListener("s1", Recorder(), cdir):
        with pytest.raises(ControlError, match="another live session"):
            ControlListener("s1", Recorder(), cdir).start()


def test_close_leaves_a_socket_that_is_no_longer_its_own(cdir):
    listener = ControlListener("s1", Recorder(), cdir).start()
    os.unlink(listener.path)
    _dead_socket(listener.path)  # someone else's file now
    listener.close()
    assert listener.path.exists()


def test_estop_goes_to_every_session_and_session_selects_one(cdir):
    a, b = Recorder(), Recorder()
    with ControlListener("a", a, cdir), ControlListener("b", b, cdir):
        both = cc.request(cc.ESTOP, {"reason": "both"}, directories=[cdir])
        only = cc.request(cc.ESTOP, {"reason": "only b"}, session="b", directories=[cdir])
    assert sorted(r.session for r in both if r.ok) == ["a", "b"]
    assert [r.session for r in only] == ["b"]
    assert len(a.calls) == 1 and len(b.calls) == 2


# --- the command line ----------------------------------------------------------------------------


def test_cli_estop_acknowledged_with_round_trip(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir):
        r = cli("estop", "--dir", str(cdir), "--reason", "from the test")
    assert r.returncode == 0, r.stderr
    assert "session s1: acknowledged: estop done" in r.stdout and "round trip" in r.stdout
    name, args = h.calls[0]
    assert name == "estop" and args["reason"] == "from the test"
    assert args["peer"]["pid"] != os.getpid() if "peer" in args else True  # it came from the subprocess


def test_cli_estop_without_sessions_says_so_and_fails(cdir):
    _dead_socket(cdir / "gone.sock")
    r = cli("estop", "--dir", str(cdir))
    assert r.returncode == 1
    assert f"no running neuroreflex session found in {cdir}" in r.stderr
    assert "session gone, which is no longer running" in r.stderr and not (cdir / "gone.sock").exists()


def test_cli_estop_reports_a_failing_session_and_exits_nonzero(cdir):
    h = Recorder()
    h.fail = {cc.ESTOP}
    with ControlListener("s1", h, cdir):
        r = cli("estop", "--dir", str(cdir))
    assert r.returncode == 1
    assert "session s1: NOT acknowledged" in r.stdout and "estop broke" in r.stdout
    assert "use the device's own stop button" in r.stderr


def test_cli_status_lists_each_session(cdir):
    with ControlListener("s1", Recorder(), cdir), ControlListener("s2", Recorder(), cdir):
        r = cli("status", "--dir", str(cdir))
        j = cli("status", "--dir", str(cdir), "--json")
    assert r.returncode == 0, r.stderr
    assert "session s1" in r.stdout and "session s2" in r.stdout and "armed: tacs" in r.stdout
    assert "interlocks: none" in r.stdout
    rows = [json.loads(line) for line in j.stdout.splitlines()]
    assert [row["session"] for row in rows] == ["s1", "s2"] and rows[0]["result"]["state"] == "running"


def test_cli_env_dir_is_used_when_no_dir_is_given(cdir):
    with ControlListener("s1", Recorder(), cdir):
        r = cli("status", env={cc.ENV_DIR: str(cdir)})
    assert r.returncode == 0 and "session s1" in r.stdout


def test_cli_arm_needs_one_named_session_and_reports_a_refusal(cdir):
    a, b = Recorder(), Recorder()
    with ControlListener("a", a, cdir):
        ok = cli("arm", "tacs", "--operator", "ana", "--dir", str(cdir))
        refused = cli("arm", "magstim", "--operator", "ana", "--dir", str(cdir))
        with ControlListener("b", b, cdir):
            ambiguous = cli("arm", "tacs", "--operator", "ana", "--dir", str(cdir))
            named = cli("arm", "tacs", "--operator", "ana", "--dir", str(cdir), "--session", "b")
    missing = cli("arm", "tacs", "--dir", str(cdir))
    assert ok.returncode == 0 and "armed tacs by ana" in ok.stdout
    assert refused.returncode == 1 and "NOT acknowledged" in refused.stdout
    assert ambiguous.returncode == 2 and "several sessions are running (a, b)" in ambiguous.stderr
    assert named.returncode == 0 and len(b.calls) == 1
    assert missing.returncode == 2 and "--operator" in missing.stderr
    assert [c[1]["device"] for c in a.calls] == ["tacs", "magstim"]


def test_cli_disarm_goes_to_every_session(cdir):
    a, b = Recorder(), Recorder()
    with ControlListener("a", a, cdir), ControlListener("b", b, cdir):
        r = cli("disarm", "tacs", "--dir", str(cdir))
    assert r.returncode == 0, r.stderr
    assert a.calls[0][0] == b.calls[0][0] == "disarm" and a.calls[0][1]["device"] == "tacs"


# --- the fast E-STOP client ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    {"reason": 'quotes " and \\ backslash, tab\t, newline\n, NUL \x00, DEL \x7f', "origin": "ünïcødé ✓"},
    {"device": "tacs", "operator": "ana", "n": 3, "flag": True, "none": None, "peer": {"pid": 1}},
    {"reason": "lone surrogate \udc80", "x": 1.5, "list": [1, "a"]},
])
def test_the_request_line_is_the_json_the_listener_reads(args):
    line = cc.encode_request(cc.ESTOP, args)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"cmd": cc.ESTOP, "args": args}


def test_estop_options_are_read_by_hand_and_anything_else_goes_to_argparse(cdir):
    from controller.operator.estop_cli import fast_options

    assert fast_options(["--reason", "r", "--dir=/x", "--session", "s1", "--timeout", "1.5"]) == \
        {"reason": "r", "dir": "/x", "session": "s1", "timeout": "1.5"}
    for bad in (["--help"], ["-h"], ["--reason"], ["--timeout", "soon"], ["--bogus", "1"], ["stray"]):
        assert fast_options(bad) is None
    bad = cli("estop", "--timeout", "soon", "--dir", str(cdir))
    assert bad.returncode == 2 and "neuroreflex estop: error: argument --timeout" in bad.stderr
    helped = cli("estop", "--help")
    assert helped.returncode == 0 and "--reason TEXT" in helped.stdout


def test_estop_module_alone_sends_the_estop(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir):
        r = subprocess.run([sys.executable, "-m", "controller.operator.estop_cli", "--dir", str(cdir), "--reason", "alone"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "session s1: acknowledged: estop done" in r.stdout
    assert h.calls[0][0] == "estop" and h.calls[0][1]["reason"] == "alone"


def test_the_estop_path_imports_nothing_heavy():
    code = ("import sys; from controller.cli import main; main(['estop', '--dir', sys.argv[1]]); "
            "print(' '.join(sorted(sys.modules)))")
    with tempfile.TemporaryDirectory(prefix="nr-none-") as empty:
        r = subprocess.run([sys.executable, "-c", code, empty], capture_output=True, text=True, cwd=ROOT, timeout=60)
    loaded = set(r.stdout.split())
    assert "controller.operator.control_client" in loaded, r.stderr
    for heavy in ("numpy", "pylsl", "yaml", "pydantic", "controller.operator.control_channel", "controller.operator.control_cli",
                  "threading", "queue"):  # (argparse: cli.py imports it at the top)
        assert heavy not in loaded, heavy


def test_estop_standby_sends_an_estop_on_every_enter(cdir):
    h = Recorder()
    with ControlListener("s1", h, cdir):
        proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "estop", "--standby", "--dir", str(cdir),
                                 "--reason", "standby test"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert proc.stdout.readline().startswith("E-STOP standby: press Enter")  # resident before any Enter
            assert h.calls == []
            for n in (1, 2):
                proc.stdin.write("\n")
                proc.stdin.flush()
                lines = [proc.stdout.readline() for _ in range(3)]
                assert lines[0].strip() == "E-STOP sent to ALL 1 running session(s): s1 (--session ID for one)", lines
                assert "session s1: acknowledged: estop done" in lines[1], lines
                assert lines[2].startswith("E-STOP standby: Enter again"), lines
                assert len(h.calls) == n and h.calls[-1][0] == "estop" and h.calls[-1][1]["reason"] == "standby test"
            proc.stdin.close()  # Ctrl-D leaves
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
