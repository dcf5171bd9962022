"""A real mosquitto broker for the tests: started, killed and restarted by the test session.

Each broker runs as its own process on a free loopback port, with its config, password file, ACL and TLS
certificates generated under a temporary folder at test time (no credential is in the repository). The
binaries come from the Debian package (``.ci/run`` installs ``mosquitto``); without them the tests that
need a broker are skipped with the reason.

    broker = Broker.plain(tmp_path)                      # anonymous, no TLS
    broker = Broker.secured(tmp_path, users={"session": "pw1", "monitor": "pw2"}, acl=ACL_TEXT)  # TLS + auth
    broker.start(); broker.kill(); broker.start()        # the same port and config after a restart
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")
MISSING = None if MOSQUITTO and MOSQUITTO_PASSWD and OPENSSL else (
    "mosquitto (and mosquitto_passwd, openssl) not installed: apt-get install mosquitto openssl (.ci/run does)")


# mosquitto started as root drops to the user "mosquitto", who cannot read the test's private files
AS_USER = "user root\n" if os.geteuid() == 0 else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certs(folder: Path, hostname: str = "localhost") -> dict[str, Path]:
    """A throw-away CA, a server certificate for ``hostname`` (and 127.0.0.1), and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / "ca.key", folder / "ca.crt"
    run = [OPENSSL or "openssl"]

    def openssl(*args: str) -> None:
        subprocess.run([*run, *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=neuroreflex-test-ca")
    out = {"ca": ca}
    for who, cn in (("server", hostname), ("client", "neuroreflex-test-client")):
        key, csr, crt = folder / f"{who}.key", folder / f"{who}.csr", folder / f"{who}.crt"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        ext = folder / f"{who}.ext"
        ext.write_text(f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n" if who == "server" else "basicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                "-out", str(crt), "-days", "2", "-extfile", str(ext))
        out[f"{who}_key"], out[f"{who}_cert"] = key, crt
    return out


def make_passwords(path: Path, users: dict[str, str]) -> Path:
    path.write_text("")
    for user, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD or "mosquitto_passwd", "-b", str(path), user, password], check=True,
                       capture_output=True)
    path.chmod(0o600)
    return path


@dataclass
class Broker:
    """One mosquitto process; ``url`` is what a client (or a site config's ``telemetry: broker:``) uses."""

    folder: Path
    port: int
    config: Path
    tls: bool = False
    certs: dict[str, Path] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    plain_port_number: int | None = None  # secured(plain_port=True): a listener without TLS, to be refused

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @classmethod
    def plain(cls, folder: Path) -> Broker:
        """Anonymous clients, no TLS: what the simplest site config talks to."""
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(f"{AS_USER}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                          "set_tcp_nodelay true\n")
        return cls(folder, port, config)

    @classmethod
    def secured(cls, folder: Path, users: dict[str, str], acl: str, *, plain_port: bool = False) -> Broker:
        """TLS, a password file and an ACL (the shape of config/mosquitto/); ``plain_port`` also opens a port
        without TLS (``plain_port_number``) so a test can show a client without TLS being turned away."""
        folder.mkdir(parents=True, exist_ok=True)
        certs = make_certs(folder / "certs")
        passwords = make_passwords(folder / "passwd", users)
        acl_file = folder / "acl"
        acl_file.write_text(acl)
        port = free_port()
        lines = ["per_listener_settings false", "set_tcp_nodelay true", "allow_anonymous false", f"password_file {passwords}",
                 f"acl_file {acl_file}", "persistence false",
                 f"listener {port} 127.0.0.1", f"cafile {certs['ca']}", f"certfile {certs['server_cert']}",
                 f"keyfile {certs['server_key']}", "tls_version tlsv1.2"]
        broker = cls(folder, port, folder / "mosquitto.conf", tls=True, certs=certs)
        if plain_port:
            broker.plain_port_number = free_port()
            lines += [f"listener {broker.plain_port_number} 127.0.0.1"]
        broker.config.write_text(AS_USER + "\n".join(lines) + "\n")
        return broker

    def start(self, timeout_s: float = 10.0) -> Broker:
        if MISSING:
            raise RuntimeError(MISSING)
        log = open(self.folder / f"mosquitto-{self.starts}.log", "wb")
        self.process = subprocess.Popen([MOSQUITTO or "mosquitto", "-c", str(self.config)], stdout=log,
                                        stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: the broker dies without a goodbye (its clients see the connection drop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("mosquitto-*.log")))
