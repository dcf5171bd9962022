"""The README's console pictures, taken offscreen from real simulated sessions driven as an operator would.

    QT_QPA_PLATFORM=offscreen python -m controller.console.screenshots docs/img [--only eeg,fmri,seizure]

Each scenario opens a console window, chooses a protocol, runs the preflight, starts the session
(simulated participant, virtual devices), acts on it through the same buttons an operator clicks,
and grabs the pages. Takes about five minutes (the sessions run in real time).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZE = (1600, 1000)


def _pump(app: object, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()  # type: ignore[attr-defined]
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def _status(window: object) -> dict:
    link = window.link  # type: ignore[attr-defined]
    return dict(link.status or {}) if link is not None else {}


def _save(widget: object, out: Path, name: str, app: object) -> None:
    _pump(app, 0.5)
    path = out / name
    widget.grab().save(str(path))  # type: ignore[attr-defined]
    print(f"wrote {path}")


def _window(root: Path, **kw: object) -> object:
    from controller.console.window import ConsoleWindow

    window = ConsoleWindow(operator="ana", participant="demo-p01", session_root=root, **kw)  # type: ignore[arg-type]
    window.resize(*SIZE)
    window.show()
    return window


def _start(window: object, app: object, protocol: Path) -> None:
    window.setup_page.choose_protocol(protocol)  # type: ignore[attr-defined]
    window.run_preflight()  # type: ignore[attr-defined]
    _pump(app, 60, lambda: window.preflight_page.runs > 0)  # type: ignore[attr-defined]
    window.start_session()  # type: ignore[attr-defined]
    if window.link is None:  # a red preflight on this machine: the operator confirms  # type: ignore[attr-defined]
        window.start_session()  # type: ignore[attr-defined]
    _pump(app, 90, lambda: _status(window).get("state") == "running")


def _finish(window: object, app: object) -> Path | None:
    folder = _status(window).get("folder")
    link = window.link  # type: ignore[attr-defined]
    if link is not None:
        link.act("stop", operator="ana")
        _pump(app, 60, lambda: link.exit_code() is not None)
    window.close()  # type: ignore[attr-defined]
    if window.simulator is not None:  # type: ignore[attr-defined]
        window.simulator.stop()  # type: ignore[attr-defined]
    return Path(folder) if folder else None


def eeg(out: Path, app: object, root: Path) -> Path | None:
    """Theta/beta neurofeedback (the demo protocol): set-up with an error, preflight, live, participant, review."""
    bad = root / "tbr_typo.yaml"
    bad.write_text((ROOT / "protocols" / "tbr_demo.yaml").read_text().replace("window: 2 s", "window: 2 parsec", 1)
                   .replace("window: 1 s", "window: 1 parsec", 1))
    window = _window(root, sim_channels=32, sim_rate=500.0)
    window.setup_page.choose_protocol(bad)  # type: ignore[attr-defined]
    _save(window, out, "console_setup_error.png", app)
    _start(window, app, ROOT / "protocols" / "tbr_demo.yaml")
    window.tabs.setCurrentWidget(window.setup_page)  # type: ignore[attr-defined]
    _save(window, out, "console_setup.png", app)
    window.tabs.setCurrentWidget(window.preflight_page)  # type: ignore[attr-defined]
    _save(window, out, "console_preflight.png", app)
    window.tabs.setCurrentWidget(window.live_stack)  # type: ignore[attr-defined]
    _pump(app, 60, lambda: _status(window).get("block") == "train")
    window.display_mode.setCurrentText("game")  # type: ignore[attr-defined]
    window.display_screen.setValue(0)  # type: ignore[attr-defined]
    window.open_participant_display()  # type: ignore[attr-defined]
    participant = window.participant_window  # type: ignore[attr-defined]
    if participant is not None:
        participant.showNormal()
        participant.resize(900, 700)
    _pump(app, 12)  # well inside the 30 s training block: the rocket flies
    if participant is not None:
        _save(participant, out, "console_participant_live.png", app)
    _pump(app, 8)
    window.controls.note_edit.setText("participant reports feeling sleepy")  # type: ignore[attr-defined]
    window.controls.note_button.click()  # type: ignore[attr-defined]
    _pump(app, 3)
    _save(window, out, "console_live_eeg.png", app)
    folder = _finish(window, app)
    if folder is not None:
        review = _window(root)
        review.open_review(folder)  # type: ignore[attr-defined]
        _pump(app, 2)
        page = review.review_page  # type: ignore[attr-defined]
        notes = [i for i, e in enumerate(page.record.events) if "sleepy" in e.text]
        if notes:
            page.scrub_to_event(notes[0])
        _save(review, out, "console_review.png", app)
        review.close()  # type: ignore[attr-defined]
    return folder


def fmri(out: Path, app: object, root: Path) -> None:
    """Left-amygdala neurofeedback on the simulated scanner: the operator panel and the ROI over the volume."""
    window = _window(root)
    _start(window, app, ROOT / "protocols" / "amygdala_mdd.yaml")
    _pump(app, 75)
    _save(window, out, "console_live_fmri.png", app)
    _finish(window, app)


def seizure(out: Path, app: object, root: Path) -> None:
    """Responsive stimulation: arm in two steps, a simulated seizure detected and stimulated, then E-STOP."""
    window = _window(root, site=ROOT / "config" / "site.yaml", sim_channels="C3,C4,Cz,P3,P4,T3,T4,T5",
                     sim_rate=256.0, sim_chunk=8, sim_extra=("--seizure", "70:40"))
    _start(window, app, ROOT / "protocols" / "seizure_responsive.yaml")
    window.tabs.setCurrentWidget(window.preflight_page)  # type: ignore[attr-defined]
    _save(window, out, "console_preflight_stim.png", app)
    window.tabs.setCurrentWidget(window.live_stack)  # type: ignore[attr-defined]
    window.controls.arm_button.click()  # type: ignore[attr-defined]
    window.controls.arm_button.click()  # type: ignore[attr-defined]
    _pump(app, 150, lambda: str(((_status(window).get("devices") or {}).get("rns") or {}).get("last")).startswith("fire"))
    _pump(app, 8)
    _save(window, out, "console_live_seizure.png", app)
    window.estop()  # type: ignore[attr-defined]
    _pump(app, 10, lambda: "estop" in (_status(window).get("interlocks") or {}))
    _pump(app, 2)
    _save(window, out, "console_estop.png", app)
    _finish(window, app)


SCENARIOS = {"eeg": eeg, "fmri": fmri, "seizure": seizure}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("NEUROREFLEX_CONTROL_DIR", tempfile.mkdtemp(prefix="nr-shots-"))
    from controller.display.qt import application

    app = application()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="nr-console-shots-"))
    for name in args.only.split(","):
        SCENARIOS[name.strip()](args.out, app, root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
