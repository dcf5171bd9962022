"""The JSON Schema editors use: valid JSON, documented, and it accepts every library protocol.

``jsonschema`` is not a dependency, so a small validator for the keywords the schema uses
is written here (it refuses keywords it does not know, so it cannot pass by ignoring them).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

import protocols
from controller.protocol import json_schema

_IGNORED = {"title", "description", "default", "examples", "$schema", "$defs"}


class Invalid(Exception):
    pass


def _type_ok(value: Any, kind: str) -> bool:
    return {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }[kind](value)


def validate(value: Any, schema: dict, root: dict, path: str = "$") -> None:
    """Raise Invalid when ``value`` does not satisfy ``schema`` (JSON Schema 2020-12 subset)."""
    for key, rule in schema.items():
        if key in _IGNORED:
            continue
        if key == "$ref":
            assert rule.startswith("#/$defs/"), rule
            validate(value, root["$defs"][rule.split("/")[-1]], root, path)
        elif key == "type":
            if not _type_ok(value, rule):
                raise Invalid(f"{path}: not {rule}: {value!r}")
        elif key == "enum":
            if value not in rule:
                raise Invalid(f"{path}: {value!r} not in {rule}")
        elif key == "const":
            if value != rule:
                raise Invalid(f"{path}: {value!r} != {rule!r}")
        elif key == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                raise Invalid(f"{path}: {value!r} does not match {rule}")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if _type_ok(value, "number"):
                ok = {"minimum": value >= rule, "maximum": value <= rule,
                      "exclusiveMinimum": value > rule, "exclusiveMaximum": value < rule}[key]
                if not ok:
                    raise Invalid(f"{path}: {value} violates {key} {rule}")
        elif key in ("minItems", "maxItems", "uniqueItems", "items"):
            if not isinstance(value, list):
                continue
            if key == "minItems" and len(value) < rule or key == "maxItems" and len(value) > rule:
                raise Invalid(f"{path}: {len(value)} items violates {key} {rule}")
            if key == "uniqueItems" and rule and len(set(map(json.dumps, value))) != len(value):
                raise Invalid(f"{path}: items not unique")
            if key == "items":  # (2020-12) applies past the prefixItems
                n_prefix = len(schema.get("prefixItems", ()))
                for i, item in enumerate(value[n_prefix:], start=n_prefix):
                    if rule is False:
                        raise Invalid(f"{path}: item {i} beyond prefixItems not allowed")
                    validate(item, rule, root, f"{path}[{i}]")
        elif key == "prefixItems":
            if isinstance(value, list):
                for i, (item, sub) in enumerate(zip(value, rule)):
                    validate(item, sub, root, f"{path}[{i}]")
        elif key in ("properties", "required", "additionalProperties", "patternProperties",
                     "propertyNames", "minProperties", "maxProperties"):
            if not isinstance(value, dict):
                continue
            if key == "required":
                missing = [k for k in rule if k not in value]
                if missing:
                    raise Invalid(f"{path}: missing {missing}")
            elif key == "properties":
                for k, sub in rule.items():
                    if k in value:
                        validate(value[k], sub, root, f"{path}.{k}")
            elif key == "patternProperties":
                for k, v in value.items():
                    for pattern, sub in rule.items():
                        if re.search(pattern, k):
                            validate(v, sub, root, f"{path}.{k}")
            elif key == "additionalProperties":
                known = set(schema.get("properties", {}))
                patterns = list(schema.get("patternProperties", {}))
                for k, v in value.items():
                    if k in known or any(re.search(p, k) for p in patterns):
                        continue
                    if rule is False:
                        raise Invalid(f"{path}: unexpected key {k!r}")
                    if isinstance(rule, dict):
                        validate(v, rule, root, f"{path}.{k}")
            elif key == "propertyNames":
                for k in value:
                    validate(k, rule, root, f"{path}[key {k!r}]")
            elif key == "minProperties" and len(value) < rule or key == "maxProperties" and len(value) > rule:
                raise Invalid(f"{path}: {len(value)} keys violates {key} {rule}")
        elif key in ("anyOf", "oneOf"):
            passed = 0
            for sub in rule:
                try:
                    validate(value, sub, root, path)
                    passed += 1
                except Invalid:
                    pass
            if passed == 0 or (key == "oneOf" and passed != 1):
                raise Invalid(f"{path}: {passed} of {len(rule)} alternatives of {key} match {value!r}")
        elif key == "not":
            try:
                validate(value, rule, root, path)
            except Invalid:
                continue
            raise Invalid(f"{path}: {value!r} matches a 'not' schema")
        else:
            raise AssertionError(f"schema keyword {key!r} is not supported by this test validator")


@pytest.fixture(scope="module")
def schema() -> dict:
    return json_schema()


def test_schema_is_json_with_the_top_level_keys(schema: dict) -> None:
    again = json.loads(json.dumps(schema))
    assert again == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "protocol", "description", "inputs", "features", "thresholds", "timeline", "rules", "feedback",
        "devices", "interlocks", "rois", "runs",
    }
    assert set(schema["required"]) == {"protocol", "inputs", "timeline"}


def test_every_property_is_documented(schema: dict) -> None:
    """Editors show descriptions on hover: every field of every object has one."""
    undocumented = []
    for name, definition in [("<root>", schema), *schema["$defs"].items()]:
        for prop, sub in definition.get("properties", {}).items():
            if not sub.get("description"):
                undocumented.append(f"{name}.{prop}")
    assert undocumented == []
    for kind in ("BandPowerDecl", "BandRatioDecl", "RelativePowerDecl", "PeakToPeakDecl"):
        assert schema["$defs"][kind]["description"]


@pytest.mark.parametrize("path", sorted(protocols.PROTOCOL_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_schema_accepts_library_protocols(schema: dict, path) -> None:
    validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema, schema)


@pytest.mark.parametrize(
    "mutate, mistake",
    [
        (lambda d: d["features"]["tbr"]["band_ratio"].update(window=2), "window"),
        (lambda d: d["features"]["tbr"]["band_ratio"].update(windw="2 s"), "windw"),
        (lambda d: d["features"].update(x={"bandpower": {}}), "bandpower"),
        (lambda d: d["thresholds"]["goal"]["percentile"].update(q=140), "q"),
        (lambda d: d["timeline"].append({"train": "3 min", "rest": "30 s"}), "timeline"),
        (lambda d: d["timeline"].append({"repeat": 2}), "timeline"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["inputs"]["eeg"].update(reference=3), "reference"),
        (lambda d: d["features"].update({"and": d["features"]["tbr"]}), "and"),
    ],
)
def test_schema_rejects_common_mistakes(schema: dict, mutate, mistake: str) -> None:
    data = yaml.safe_load(protocols.find("tbr_adhd").read_text(encoding="utf-8"))
    validate(data, schema, schema)
    mutate(data)
    with pytest.raises(Invalid):
        validate(data, schema, schema)
