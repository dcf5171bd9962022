"""Block labels per volume from an OpenNFT JSON protocol (e.g. NF_PSC_cont_155.json).

OpenNFT lists each condition's [onset, offset] blocks (1-based, inclusive) in volumes counted
*after* the skipped dummy volumes; volumes in no listed block are the baseline. So with 5 skipped
volumes, onset 11 is acquired volume 16.
"""

from __future__ import annotations

import json
from pathlib import Path


def opennft_block_labels(path: str | Path, n_volumes: int, baseline_label: str = "BAS") -> list[str]:
    """Labels for volumes 1..n_volumes after the skipped ones (the condition name, or ``baseline_label``)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read the OpenNFT protocol: {exc}") from exc
    labels = [baseline_label] * n_volumes
    for ci, cond in enumerate(doc.get("ConditionIndex", [])):
        name = cond.get("ConditionName")
        if not isinstance(name, str):
            raise ValueError(f"{p}: ConditionIndex[{ci}] has no ConditionName")
        for bi, block in enumerate(cond.get("OnOffsets", [])):
            if len(block) != 2 or not all(isinstance(v, int) for v in block) or block[0] > block[1] or block[0] < 1:
                raise ValueError(f"{p}: ConditionIndex[{ci}].OnOffsets[{bi}] = {block} is not [onset, offset] (1-based)")
            for v in range(block[0], min(block[1], n_volumes) + 1):
                labels[v - 1] = name
    return labels
