"""The fMRI feature kinds are kinds like any other (issue 13, item 1): one module each under
``controller/features/kinds``, found through the one feature registry by the protocol language, the
per-volume pipeline and its offline reference.

Checked: the registry lists them after the signal kinds, in the language's order; each kind's online
evaluator equals its own offline reference on series placed by acquisition (drops and swaps); and the
whole per-volume pipeline on the real OpenNFT run, with every fMRI kind at once, equals the offline
reference that dispatches through the registry (``offline_feature_values``), with and without the
spike filter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from controller.features import FeatureKind, VolumeFeatureKind, registry
from controller.fmri.design import VolumeDesign
from controller.fmri.glm import GlmConfig
from controller.fmri.offline import FeaturePipelineConfig, offline_feature_values
from controller.fmri.pipeline import VolumePipeline, VolumePipelineError, task_conditions
from controller.fmri.spikes import SpikeConfig
from controller.inputs.volumes.volume import Volume
from controller.protocol import loads_protocol

ROOT = Path(__file__).resolve().parents[3]
OPENNFT = ROOT.parent / "shared" / "data" / "fmri" / "opennft"
RUN = OPENNFT / "opennft_psc_run_vols001-048_4d.nii.gz"

SYNTHETIC = """
protocol: volume-kinds
inputs:
  fmri: {volumes: {folder: scanner}, tr: 2 s}
rois:
  a: {sphere: {center: [0, 0, 0], radius: 8 mm}}
  b: {sphere: {center: [20, 0, 0], radius: 8 mm}}
features:
  psc: {roi_psc: {input: fmri, roi: a, baseline: rest, skip: 1 TR, average: 3 TR}}
  mean: {roi_mean: {input: fmri, roi: b}}
  r: {roi_correlation: {input: fmri, rois: [b, a], window: 5 TR}}
  z: {roi_correlation: {input: fmri, rois: [a, b], window: 4 TR, fisher_z: true}}
timeline:
  - repeat: 3
    blocks: [{rest: 12 s}, {up: 12 s}]
"""
# Volumes 1..36 (6 per block) with 4, 11 lost and 8/9, 20/21 swapped.
ORDER = [1, 2, 3, 5, 6, 7, 9, 8, 10, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, *range(22, 37)]


def test_the_fmri_kinds_are_in_the_one_registry_after_the_signal_kinds() -> None:
    kinds = registry.kinds()
    volume = [k.name for k in kinds if isinstance(k, VolumeFeatureKind)]
    assert volume == ["roi_psc", "roi_mean", "roi_correlation"] == list(registry.volume_kinds())
    assert all(isinstance(k, FeatureKind) for k in kinds[: len(kinds) - len(volume)])
    assert registry.volume_kind("roi_psc").declaration.__name__ == "RoiPscDecl"
    with pytest.raises(ValueError, match="'band_power' is not an fMRI feature kind; fMRI feature kinds: roi_psc"):
        registry.volume_kind("band_power")


def test_a_pipeline_refuses_a_signal_feature() -> None:
    eeg = loads_protocol("""
protocol: eeg
inputs: {eeg: {stream: {type: EEG}, channels: [Cz]}}
features: {bp: {band_power: {input: eeg, band: [8 Hz, 12 Hz], window: 1 s, every: 100 ms}}}
timeline: [{rest: 10 s}]
""")
    spec = loads_protocol(SYNTHETIC).volume_inputs["fmri"]
    feature = dataclasses.replace(eeg.features["bp"], input="fmri")
    with pytest.raises(VolumePipelineError, match="feature 'bp': kind 'band_power' is not an fMRI feature"):
        VolumePipeline(spec, [feature], {}, eeg.timeline)


def test_each_kind_online_equals_its_offline_reference_placed_by_acquisition() -> None:
    protocol = loads_protocol(SYNTHETIC)
    design = VolumeDesign(protocol.timeline, 2.0, 1)
    rng = np.random.default_rng(13)
    series = {"a": 1000 + rng.normal(0, 5, 37).cumsum(), "b": 800 + rng.normal(0, 5, 37)}
    places = [design.place(i) for i in ORDER]
    assert task_conditions(list(protocol.features.values()), protocol.timeline) == ("up",)
    for spec in protocol.features.values():
        kind = registry.volume_kind(spec.kind)
        rois = kind.rois(spec)
        detrended = np.array([[series[r][i] for r in rois] for i in ORDER])
        evaluate = kind.evaluator(spec)
        online = [evaluate(p, list(row)) for p, row in zip(places, detrended)]
        online = np.array([np.nan if v is None else v for v in online])
        offline = kind.offline(detrended, places, spec)
        assert np.isfinite(online).sum() >= 10, spec.name
        np.testing.assert_allclose(online, offline, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=spec.name)


@pytest.mark.skipif(not RUN.exists(), reason="../shared/data/fmri/opennft not present")
@pytest.mark.parametrize("spikes", [False, True])
def test_the_pipeline_equals_the_registry_reference_for_every_kind_on_the_real_run(spikes: bool) -> None:
    text = f"""
protocol: opennft-every-kind
inputs:
  fmri:
    volumes: {{folder: scanner, pattern: "*.nii"}}
    tr: 1.97 s
    skip: 5 TR
    detrend: {{drift: 2, motion: false, spikes: {str(spikes).lower()}}}
rois:
  lroi: {{mask: {OPENNFT / "lROI_1.nii"}}}
  rroi: {{mask: {OPENNFT / "rROI_2.nii"}}}
features:
  lroi_psc: {{roi_psc: {{input: fmri, roi: lroi, baseline: baseline, skip: 3 TR, average: 3 TR}}}}
  rroi_mean: {{roi_mean: {{input: fmri, roi: rroi}}}}
  conn: {{roi_correlation: {{input: fmri, rois: [rroi, lroi], window: 8 TR, fisher_z: true}}}}
timeline:
  - repeat: 7
    blocks: [{{baseline: 19.7 s}}, {{nf: 19.7 s}}]
  - baseline: 19.7 s
feedback: {{value: lroi_psc, range: [0 %, 2 %], during: nf}}
"""
    protocol = loads_protocol(text)
    img = nib.load(str(RUN))
    data = np.asarray(img.dataobj, dtype=np.float32)
    spec = protocol.volume_inputs["fmri"]
    pipe = VolumePipeline(spec, list(protocol.features.values()), protocol.rois, protocol.timeline,
                          feedback_blocks=protocol.feedback.during)
    assert pipe.roi_names == ["lroi", "rroi"]
    order = [*range(1, 9), 10, 9, *range(11, 20), *range(21, 33), 34, 33, *range(35, 49)]  # 20 lost, two swaps
    rows = []
    for k, index in enumerate(order):
        res = pipe.push(Volume(index, data[..., index - 1], img.affine, 1.97, acquired=float(index),
                               arrived=float(k)))
        if not res.qc.dummy:
            rows.append({**res.qc.to_data(), "values": {v.name: v.value for v in res.values}})
    places = [pipe.design.place(r["index"]) for r in rows]
    raw = np.array([[r["rois"][name]["raw"] for name in pipe.roi_names] for r in rows])
    config = FeaturePipelineConfig(glm=GlmConfig(drift_order=2, motion=False, n_task=1, n_planned=pipe.design.volumes),
                                   spike=SpikeConfig() if spikes else None)
    reference = offline_feature_values(raw, None, places, config, list(protocol.features.values()), pipe.roi_names,
                                       pipe.task)
    for name in protocol.features:
        online = np.array([r["values"].get(name, np.nan) for r in rows])
        assert np.isfinite(online).sum() >= 20, name
        np.testing.assert_allclose(online, reference[name], rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)
