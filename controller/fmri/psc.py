"""Percent signal change against the preceding baseline block, and its moving-average feedback value.

The definition lives with the feature kind that computes it, ``controller.features.kinds.roi_psc``
(its online evaluator and its offline reference); the fMRI stage references
(``controller.fmri.offline``) and callers of the multi-series classes import them from here.
"""

from __future__ import annotations

from controller.features.kinds.roi_psc import PscConfig, PscFeedback, PscStep, offline_psc, offline_psc_placed

__all__ = ["PscConfig", "PscFeedback", "PscStep", "offline_psc", "offline_psc_placed"]
