"""Qt-free state of the participant's game: the object's smoothed height, the reward score, the
reward flash and when a reward sound is due; and the reward tone itself (numpy samples, a WAV file).

The game follows the same ``ThermometerState`` as the bar (blocks, instructions, feedback value,
target line), so the object shows in exactly the blocks where the bar would. What it adds is
presentation over time: EEG feedback arrives 4-20 times a second and jitters, so the object
approaches the value with a time constant instead of jumping; rewards may fire on every frame, so
the sound is rate-limited in the markers' own (source) time, never by a wall clock.
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.display.model import ThermometerState

REWARD = "reward"  # the marker a rule's `do: {feedback: reward}` sends (controller/engine/engine.py)
DIM, BRIGHT = 0.35, 1.0  # the object's brightness (HSV value) at the bottom and at the top


@dataclass
class GameState:
    """What the game shows; feed it LSL pulls (``on_markers``, ``on_feedback``) and advance it with
    ``step(dt)`` from the display's animation timer.

    ``level`` (0..1) is the object's height: it approaches the feedback value with time constant
    ``smoothing_s`` (0: no smoothing) and is 0 while the object is hidden (it starts each feedback
    block from the ground). ``flash`` is 1 right after a reward and fades to 0 over ``flash_s``.
    A reward sound is due for a reward marker at least ``sound_gap_s`` (marker stamps) after the
    last sounded one: at 20 rewarded frames a second the participant hears a chime, not a buzz.
    """

    feedback: ThermometerState = field(default_factory=ThermometerState)
    smoothing_s: float = 0.4
    flash_s: float = 0.6
    sound_gap_s: float = 0.5
    level: float = 0.0
    flash: float = 0.0
    score: int = 0  # reward markers received since the start (or the last reset)
    phase: float = 0.0  # seconds animated, for the flame's flicker
    _sounds: int = 0
    _last_sound_t: float = -np.inf

    # ------------------------------------------------------------------ what the thermometer knows
    @property
    def visible(self) -> bool:
        """The object shows where the thermometer shows its bar (feedback blocks)."""
        return self.feedback.bar_visible

    @property
    def text(self) -> str:
        return self.feedback.text

    @property
    def target(self) -> float | None:
        return self.feedback.target

    @property
    def value(self) -> float | None:
        """The last feedback value (0..1) of this block, unsmoothed."""
        return self.feedback.value if self.visible else None

    # ------------------------------------------------------------------ derived for drawing
    @property
    def brightness(self) -> float:
        """The object's brightness (HSV value, DIM..BRIGHT), rising linearly with its height."""
        return DIM + (BRIGHT - DIM) * self.level

    @property
    def reached(self) -> bool:
        """The object is at or above the target line."""
        return self.visible and self.target is not None and self.level >= self.target

    # ------------------------------------------------------------------ feeding
    def on_markers(self, texts: Sequence[str], stamps: Sequence[float] | None = None) -> None:
        self.feedback.on_markers(texts, stamps)
        rewarded = np.flatnonzero(np.asarray([t.strip() == REWARD for t in texts], dtype=bool))
        if rewarded.size == 0:
            return
        self.score += int(rewarded.size)
        self.flash = 1.0
        if stamps is None:  # no clock to rate-limit with: one sound per pull that had rewards
            self._sounds += 1
            return
        for t in np.asarray(stamps, dtype=float)[rewarded]:
            if t - self._last_sound_t >= self.sound_gap_s:
                self._last_sound_t = float(t)
                self._sounds += 1

    def on_feedback(self, rows: np.ndarray, stamps: np.ndarray | None = None) -> None:
        self.feedback.on_feedback(rows, stamps)

    def step(self, dt_s: float) -> None:
        """Advance the animation by ``dt_s`` seconds (the display's frame time)."""
        dt = max(0.0, float(dt_s))
        self.phase += dt
        self.flash = max(0.0, self.flash - dt / self.flash_s) if self.flash_s > 0 else 0.0
        goal = self.value
        if goal is None:
            self.level = 0.0
            return
        if self.smoothing_s <= 0:
            self.level = goal
        else:
            self.level += (goal - self.level) * (1.0 - float(np.exp(-dt / self.smoothing_s)))

    def take_sounds(self) -> int:
        """Reward sounds due since the last call (the display plays one if any)."""
        n, self._sounds = self._sounds, 0
        return n

    def reset_score(self) -> None:
        """A new session: the score, flash and pending sounds start again."""
        self.score, self.flash, self._sounds, self._last_sound_t = 0, 0.0, 0, -np.inf


# ---------------------------------------------------------------------- the reward tone
def reward_tone(rate: int = 44100, notes_hz: Sequence[float] = (880.0, 1318.5), note_s: float = 0.09,
                amplitude: float = 0.35) -> np.ndarray:
    """A short rising chime (two notes, a fifth apart) as float samples in -1..1.

    Each note has a raised-cosine attack and an exponential decay, so it starts and ends without
    a click; soft enough not to startle (amplitude 0.35 of full scale)."""
    n = int(round(note_s * rate))
    t = np.arange(n) / rate
    attack = min(n, int(0.005 * rate))
    envelope = np.exp(-t / (note_s / 3))
    envelope[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    envelope[-attack:] *= np.linspace(1.0, 0.0, attack)
    notes = np.sin(2 * np.pi * np.asarray(notes_hz, dtype=float)[:, None] * t[None, :]) * envelope
    return amplitude * notes.reshape(-1)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = 44100) -> Path:
    """Mono 16-bit PCM WAV of ``samples`` (-1..1, clipped)."""
    path = Path(path)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path
