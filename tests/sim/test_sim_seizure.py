"""Simulated seizures as ground truth: nothing before onset, the scheduled evolving frequency, spread with
delay and attenuation, line length in the scalp range, a spike-and-wave (not sinusoidal) waveform, post-ictal
suppression, and a stream cut into any chunks that equals the offline recording sample for sample."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal, stats

from controller.dsp.seizure.detectors import TrendedWindowParams
from controller.dsp.seizure.offline import offline_line_length
from controller.lang.compiled import Band
from sim.eeg import EegGenerator
from sim.participant import ParticipantConfig, ParticipantModel
from sim.seizure import (
    SEIZURE_OFFSET,
    SEIZURE_ONSET,
    Seizure,
    SeizureConfig,
    SeizureSchedule,
    simulate_seizures,
    spike_wave,
)
from sim.stream import EegStreamer

FS = 250.0
ONSET_S, DURATION_S = 30.0, 60.0
PROTOCOL_LABELS = ("C3", "C4", "Cz", "P3", "P4", "T3", "T4", "T5")  # protocols/seizure_responsive.yaml


SPREAD_LABELS = ("Fp1", "Fz", "FT7", "C5", "C3", "T7", "Cz", "C4", "T8", "TP7", "Pz", "O1", "O2")


@pytest.fixture(scope="module")
def rec():
    """105 s of a 13-channel cap: a left temporal (T7) seizure from 30 s to 90 s, then 15 s post-ictal."""
    schedule = SeizureSchedule((Seizure(ONSET_S, DURATION_S),), SeizureConfig(focus="T7"))
    return simulate_seizures(105.0, schedule, channels=SPREAD_LABELS, rate=FS, seed=3, keep_discharge=True)


def band(x: np.ndarray, lo: float = 1.0, hi: float = 30.0) -> np.ndarray:
    return signal.sosfiltfilt(signal.butter(4, [lo, hi], btype="bandpass", fs=FS, output="sos"), x, axis=0)


def seconds(s: float) -> int:
    return int(round(s * FS))


def test_before_onset_the_seizure_adds_nothing():
    schedule = SeizureSchedule((Seizure(4.0, 3.0),), SeizureConfig(focus="C3"))
    plain = EegGenerator(8, FS, seed=5).generate(seconds(10))
    ictal = EegGenerator(8, FS, seed=5, seizures=schedule)
    with_seizure = ictal.generate(seconds(10))
    onset = seconds(4.0)
    assert ictal.seizures is not None and list(ictal.seizures.onsets) == [onset]
    np.testing.assert_array_equal(with_seizure[: onset + 1], plain[: onset + 1])  # the onset sample fades in from 0
    c3 = ictal.labels.index("C3")
    assert not np.array_equal(with_seizure[onset + 1 : onset + 10, c3], plain[onset + 1 : onset + 10, c3])
    assert ictal.seizures.block(0, onset) == (None, None)  # the source itself: nothing at all before onset


def test_the_focus_spectral_peak_is_the_scheduled_frequency_and_slows(rec):
    focus = rec.labels.index(rec.focus)
    assert rec.focus == "T7"
    peaks, scheduled = [], []
    for t in (8.0, 20.0, 35.0, 52.0):  # seconds after onset; 4 s windows
        a = rec.onsets[0] + seconds(t - 2.0)
        f, p = signal.welch(rec.data[a : a + seconds(4.0), focus], fs=FS, nperseg=seconds(4.0), nfft=seconds(16.0))
        sel = (f >= 1.5) & (f <= 12.0)
        peaks.append(f[sel][np.argmax(p[sel])])
        scheduled.append(float(rec.frequency_hz(rec.onsets[0] + seconds(t))))
    np.testing.assert_allclose(peaks, scheduled, atol=0.35)
    assert np.all(np.diff(peaks) < 0) and peaks[0] - peaks[-1] > 2.5  # 7 Hz evolving towards 3 Hz
    assert rec.frequency_hz(rec.onsets[0]) == pytest.approx(7.0)
    assert rec.frequency_hz(rec.offsets[0]) == pytest.approx(3.0)


def test_the_phase_is_the_integral_of_the_frequency_and_continuous(rec):
    t = np.linspace(-2.0, DURATION_S + 2.0, 100_001)
    phase = rec.source.phase_cycles(t, DURATION_S)
    freq = rec.source.frequency_hz(t, DURATION_S)
    np.testing.assert_allclose(np.gradient(phase, t), freq, rtol=1e-4)  # through onset and end too
    assert np.abs(np.diff(phase)).max() < 1.01 * 7.0 * (t[1] - t[0])  # no jump anywhere


def test_spread_reaches_neighbours_later_and_far_channels_less(rec):
    ch = {lab: rec.labels.index(lab) for lab in ("T7", "FT7", "TP7", "C3", "Cz", "T8", "O2")}
    onset, end = int(rec.onsets[0]), int(rec.offsets[0])
    # ground truth: each channel's discharge starts at its recruitment sample, in distance order
    assert rec.delay_s[ch["T7"]] == 0.0
    assert 1.0 < rec.delay_s[ch["FT7"]] < 2.5 and 1.0 < rec.delay_s[ch["TP7"]] < 2.5
    assert rec.delay_s[ch["FT7"]] < rec.delay_s[ch["C3"]] < rec.delay_s[ch["Cz"]] < rec.delay_s[ch["T8"]]
    assert rec.gain[ch["T7"]] == 1.0 and rec.gain[ch["FT7"]] > 0.4 > rec.gain[ch["C3"]] > 0.1 > rec.gain[ch["T8"]]
    for label, i in ch.items():
        first = onset + np.flatnonzero(rec.discharge[onset:end, i])[0]
        assert first == rec.recruitment[0, i] + 1, label  # it fades in from zero at the recruitment sample
    # and in the data: the 2-12 Hz amplitude (no EMG there) rises first at the focus, later and less around it
    x = band(rec.data, 2.0, 12.0)
    hop, win = seconds(0.25), seconds(1.0)
    starts = np.arange(seconds(5), end - win, hop)
    rms = np.stack([x[s : s + win].std(axis=0) for s in starts])
    rms /= np.median(rms[starts < onset - win], axis=0)

    def joins(i: int) -> float:
        """Seconds after onset when the 1 s RMS has stayed above 1.5x the pre-onset level for 3 s."""
        held = sliding_window_view(rms[:, i] > 1.5, 12).all(axis=1)
        assert held.any()
        return (starts[np.argmax(held)] + win - onset) / FS

    focus_joins = joins(ch["T7"])
    assert 0.5 < focus_joins < 4.0
    assert joins(ch["FT7"]) > focus_joins + 0.5 and joins(ch["TP7"]) > focus_joins + 0.5
    level = np.median(rms[(starts > onset + seconds(15)) & (starts < end - seconds(5))], axis=0)
    assert level[ch["T7"]] > 3.0 and level[ch["T7"]] > 1.4 * max(level[ch["FT7"]], level[ch["TP7"]])
    neighbours = min(level[ch["FT7"]], level[ch["TP7"]])
    assert neighbours > 1.8 and level[ch["C3"]] < min(1.5, neighbours - 0.5)
    assert level[ch["T8"]] < 1.25 and level[ch["O2"]] < 1.25  # far channels: barely anything
    # each discharge reaches a neighbour a little later (phase-locked, travel time d / propagation speed)
    focus_d, nb_d = rec.discharge[onset + seconds(20) : end - seconds(5), ch["T7"]], rec.discharge[
        onset + seconds(20) : end - seconds(5), ch["C3"]]
    lags = signal.correlation_lags(len(nb_d), len(focus_d))
    xc = signal.correlate(nb_d, focus_d)
    near = np.abs(lags) < seconds(0.15)
    assert lags[near][np.argmax(xc[near])] == pytest.approx(rec.source.lag_s[ch["C3"]] * FS, abs=1)


def test_line_length_on_the_focus_rises_into_the_scalp_range(rec):
    """The detectors' own line length (1 s windows, 100 ms hop, 1-30 Hz) against the pre-onset mean."""
    focus = rec.labels.index(rec.focus)
    out = offline_line_length(rec.data[:, [focus]], FS, TrendedWindowParams(band=Band(1.0, 30.0)))
    t = out.sample_index / FS
    ll = out.value[:, 0]
    before = ll[(t > 5.0) & (t < ONSET_S)]
    ratio = ll / before.mean()
    developed = ratio[(t > ONSET_S + 6.0) & (t < ONSET_S + DURATION_S - 2.0)]
    assert 1.5 <= np.percentile(developed, 5) and np.percentile(developed, 95) <= 4.0
    rising = ratio[(t > ONSET_S) & (t < ONSET_S + 6.0)]
    assert rising[0] < 1.5 < rising.max()  # starts low, grows over the ramp


def test_the_waveform_is_spike_and_wave_not_a_sinusoid(rec):
    focus = rec.labels.index(rec.focus)
    onset, end = int(rec.onsets[0]), int(rec.offsets[0])
    d = rec.discharge[onset + seconds(10) : end - seconds(3), focus]
    assert stats.skew(d) < -0.8  # sharp negative spikes on a positive baseline
    assert -d.min() > 2.5 * d.max()
    # in the recorded signal (1-30 Hz, like a detector sees it): skewed during, symmetric before
    x = band(rec.data[:, focus])
    win = seconds(2.0)
    skew_before = [stats.skew(x[s : s + win]) for s in range(seconds(5), onset - win, win)]
    skew_during = [stats.skew(x[s : s + win]) for s in range(onset + seconds(10), end - seconds(3) - win, win)]
    assert abs(np.median(skew_before)) < 0.25 and np.median(skew_during) < -0.5
    # a sinusoid of the same frequency and RMS is not (the model's own cycle at 3 and 7 Hz)
    u = np.linspace(0.0, 1.0, 4000, endpoint=False)
    for hz in (3.0, 7.0):
        cycle = spike_wave(u, np.full_like(u, hz), 0.010)
        assert cycle.mean() == pytest.approx(0.0, abs=1e-12) and cycle.std() == pytest.approx(1.0, rel=1e-12)
        assert stats.skew(cycle) < -0.8 and stats.skew(np.sin(2 * np.pi * u)) == pytest.approx(0.0, abs=1e-9)
        harmonics = np.abs(np.fft.rfft(cycle))[1:8]
        assert np.argmax(harmonics) == 0 and harmonics[1] > 0.2 * harmonics[0]  # the rhythm's, with harmonics
        assert np.argmin(cycle) < 0.01 * len(u)  # the spike at whole cycles, the slow wave after it


def test_post_ictal_suppression_then_recovery(rec):
    focus = rec.labels.index(rec.focus)
    x = band(rec.data[:, focus])
    onset, end = int(rec.onsets[0]), int(rec.offsets[0])

    def level(a: int, b: int) -> float:  # median 0.5 s RMS: an EMG burst does not move it
        return float(np.median([x[s : s + seconds(0.5)].std() for s in range(a, b - seconds(0.5), seconds(0.5))]))

    before = level(seconds(5), onset)
    assert level(end + seconds(0.5), end + seconds(4.5)) < 0.6 * before  # depth 0.6: ~0.4 of it remains
    assert level(end + seconds(10.5), end + seconds(14.5)) == pytest.approx(before, rel=0.3)


def steady_participant() -> ParticipantModel:
    """The ratio never moves: the stream's samples depend on the seed alone."""
    return ParticipantModel(ParticipantConfig(fluctuation_sd=0.0, learning_rate=0.0))


@pytest.mark.parametrize("chunk", [1, 8, 32])
def test_streaming_in_chunks_equals_the_offline_recording(chunk):
    schedule = SeizureSchedule((Seizure(1.0, 2.0), Seizure(4.5, 1.0)), SeizureConfig(focus="T3", start_hz=8.0))
    n = seconds(6.0) // chunk * chunk  # onsets, offsets and post-ictal periods of both
    offline = simulate_seizures(n / FS, schedule, channels=PROTOCOL_LABELS, rate=FS, seed=9,
                                tbr=steady_participant().tbr, block_s=0.7)
    streamer = EegStreamer(channels=PROTOCOL_LABELS, rate=FS, chunk=chunk, seed=9, marker_stream=None,
                           participant=steady_participant(), seizures=schedule)
    streamed = np.vstack([streamer._next_chunk() for _ in range(n // chunk)])  # what run() pushes
    assert streamed.dtype == np.float32 and offline.data.shape == streamed.shape
    np.testing.assert_allclose(streamed, offline.data.astype(np.float32), rtol=2e-7, atol=1e-13)
    assert offline.focus == "T3" and list(offline.onsets) == [250, 1125] and list(offline.offsets) == [750, 1375]
    assert streamer.generator.seizures.markers() == [(250, SEIZURE_ONSET), (750, SEIZURE_OFFSET),
                                                     (1125, SEIZURE_ONSET), (1375, SEIZURE_OFFSET)]


def test_schedule_and_model_are_checked():
    with pytest.raises(ValueError, match="overlap"):
        SeizureSchedule((Seizure(10.0, 30.0), Seizure(20.0)))
    with pytest.raises(ValueError, match="onset"):
        Seizure(-1.0)
    with pytest.raises(ValueError, match="unknown seizure focus 'Xx1'"):
        SeizureConfig(focus="Xx1")
    with pytest.raises(ValueError, match="rate"):
        EegGenerator(8, 100.0, seizures=SeizureSchedule((Seizure(1.0),), SeizureConfig(start_hz=30.0)))
    schedule = SeizureSchedule((Seizure(50.0, 5.0), Seizure(1.0, 5.0)), SeizureConfig(focus="left-temporal"))
    assert [s.onset_s for s in schedule.seizures] == [1.0, 50.0]  # sorted
    gen = EegGenerator(PROTOCOL_LABELS, FS, seizures=schedule)
    assert gen.seizures is not None and gen.seizures.focus_channel == "T3"  # T7's old name, same place
