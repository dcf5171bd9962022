"""The session folder: unique, exact copies with their hashes, a manifest that ends well."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from controller import __version__
from controller.recording.session import SessionFolder, safe_name

# CRLF, a tab, non-ASCII and a byte that is not UTF-8: any text-mode copy would change it.
PROTOCOL_BYTES = b"protocol: tbr-adhd\r\ntimeline: [{baseline: 2 min}]\t# \xc3\xa9 \xff\n"
SITE_BYTES = b"devices: {}\nlimits: {tms: {max_intensity: 80 %}}\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    protocol = src / "tbr.yaml"
    protocol.write_bytes(PROTOCOL_BYTES)
    site = src / "site.yaml"
    site.write_bytes(SITE_BYTES)
    return protocol, site


def test_copies_are_byte_exact_and_hashed(tmp_path: Path, files: tuple[Path, Path]) -> None:
    protocol, site = files
    folder = SessionFolder.create(tmp_path / "sessions", protocol, site, name="tbr-adhd")
    m = folder.manifest()
    assert (folder.path / m["protocol"]["copy"]).read_bytes() == PROTOCOL_BYTES
    assert (folder.path / m["site_config"]["copy"]).read_bytes() == SITE_BYTES
    assert m["protocol"]["sha256"] == hashlib.sha256(PROTOCOL_BYTES).hexdigest()
    assert m["site_config"]["sha256"] == hashlib.sha256(SITE_BYTES).hexdigest()
    assert m["protocol"]["name"] == "tbr-adhd"
    assert m["protocol"]["source_path"] == str(protocol.resolve())
    assert folder.verify() == []


def test_folder_name_paths_and_manifest_fields(tmp_path: Path, files: tuple[Path, Path]) -> None:
    protocol, _ = files
    folder = SessionFolder.create(tmp_path, protocol, None, name="tbr adhd/v2", source={"citation": "PhysioNet"})
    stamp, _, rest = folder.session_id.partition("_")
    assert len(stamp) == 15 and stamp[8] == "-" and stamp.replace("-", "").isdigit()
    assert rest == "tbr-adhd-v2"
    assert folder.path.parent == tmp_path
    assert folder.xdf_path == folder.path / "recording.xdf"
    assert folder.journal_path == folder.path / "journal.jsonl"
    assert folder.report_dir == folder.path / "report"
    m = json.loads((folder.path / "manifest.json").read_text())
    assert m["session_id"] == folder.session_id
    assert m["status"] == "running" and m["end"] is None
    assert m["site_config"] is None
    assert m["software"]["neuroreflex"] == __version__
    assert set(m["software"]["packages"]) >= {"numpy", "scipy", "mne", "pylsl", "mne-lsl"}
    assert all(m["software"]["packages"][p] for p in ("numpy", "scipy", "mne", "pylsl", "mne-lsl"))
    assert m["software"]["python"] and m["host"]["hostname"]
    assert m["start"]["iso"].startswith(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T")
    assert m["start"]["lsl_clock"] > 0
    assert m["source"] == {"citation": "PhysioNet"}


def test_folders_are_unique_and_never_overwritten(tmp_path: Path, files: tuple[Path, Path]) -> None:
    protocol, site = files
    folders = [SessionFolder.create(tmp_path, protocol, site, name="same") for _ in range(5)]
    assert len({f.path for f in folders}) == 5
    first = folders[0]
    (first.path / "marker.txt").write_text("mine")
    again = SessionFolder.create(tmp_path, protocol, site, name="same")
    assert again.path != first.path
    assert (first.path / "marker.txt").read_text() == "mine"
    assert first.manifest()["session_id"] == first.session_id


def test_finish_records_end_status_summary_and_output_hashes(tmp_path: Path, files: tuple[Path, Path]) -> None:
    protocol, site = files
    folder = SessionFolder.create(tmp_path, protocol, site)
    folder.journal_path.write_text('{"kind":"session_start","t":1.0,"t_source":null,"data":{}}\n')
    folder.finish("completed", {"rewards": 12, "blocks": 3})
    m = folder.manifest()
    assert m["status"] == "completed"
    assert m["summary"] == {"rewards": 12, "blocks": 3}
    assert m["end"]["lsl_clock"] >= m["start"]["lsl_clock"]
    assert m["output_sha256"] == {"journal.jsonl": hashlib.sha256(folder.journal_path.read_bytes()).hexdigest()}
    with pytest.raises(RuntimeError, match="already finished with status 'completed'"):
        folder.finish("error", {})
    assert folder.manifest()["status"] == "completed"
    folder.journal_path.write_text("tampered\n")
    assert any("journal.jsonl" in p for p in folder.verify())


def test_bad_inputs_are_named(tmp_path: Path, files: tuple[Path, Path]) -> None:
    protocol, _ = files
    with pytest.raises(FileNotFoundError, match="protocol file .*missing.yaml"):
        SessionFolder.create(tmp_path, tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="site config file"):
        SessionFolder.create(tmp_path, protocol, tmp_path / "nosite.yaml")
    folder = SessionFolder.create(tmp_path, protocol)
    with pytest.raises(ValueError, match="status 'done' is not one of"):
        folder.finish("done", {})
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        SessionFolder.open(tmp_path / "nowhere")
    assert SessionFolder.open(folder.path).manifest()["status"] == "running"


def test_safe_name() -> None:
    assert safe_name("tbr-adhd") == "tbr-adhd"
    assert safe_name("../../etc") == "etc"
    assert safe_name("a b:c") == "a-b-c"
    assert safe_name("///") == "session"
