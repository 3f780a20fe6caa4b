"""The certificate's published JSON Schema (``certun/schemas/certificate-1.schema.json``).

Every certificate the test suite builds is validated against it (``tests/conftest.py``
wraps ``Certificate.__post_init__``); here: the schema agrees with the code's constants,
ships as package data, accepts both views of real certificates and rejects broken ones,
with ``jsonschema`` and with the built-in fallback validator alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from certun import certificate as C

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cert():
    return C.make_certificate(
        mechanism="test", epsilon=1.0, delta=1e-5, sigma=2.0,
        threat="indistinguishable_from_retraining", adjacency="removal", scale="sum",
        calibration="guo_c", removed=3, budget=C.Budget(2.28, 0.5, "sum-scale residual"),
        assumptions=[C.verified("unit_rows", "||x_i|| <= 1", 1.0, 1.0, private=True),
                     C.assumed("lipschitz", "loss is 1-Lipschitz")],
        bounds={"residual": float("inf")}, solver={"iterations": 3},
        public_inputs={"n": 100})


def test_schema_matches_the_code_constants():
    s = C.json_schema()
    assert s["$id"] == C.SCHEMA and s["properties"]["schema"]["const"] == C.SCHEMA
    p = s["properties"]
    assert tuple(p["status"]["enum"]) == C.STATUSES
    assert tuple(p["threat"]["enum"]) == C.THREATS
    assert tuple(p["adjacency"]["enum"]) == C.ADJACENCIES
    assert tuple(p["scale"]["enum"]) == C.SCALES
    assert tuple(s["$defs"]["assumption"]["properties"]["state"]["enum"]) == C.ASSUMPTION_STATES
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in pyproject  # shipped in the wheel
    with pytest.raises(ValueError, match="unknown certificate schema"):
        C.json_schema("certun.certificate/x")
    with pytest.raises(ValueError, match="no published schema"):
        C.json_schema("certun.certificate/99")


@pytest.mark.parametrize("use_jsonschema", [True, False])
def test_both_views_validate_and_broken_documents_fail(cert, monkeypatch, use_jsonschema):
    if not use_jsonschema:  # the built-in validator for installs without jsonschema
        import builtins

        real_import = builtins.__import__

        def no_jsonschema(name, *a, **k):
            if name == "jsonschema":
                raise ImportError(name)
            return real_import(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", no_jsonschema)
    else:
        pytest.importorskip("jsonschema")
    for private in (True, False):
        doc = json.loads(cert.to_json(private=private))
        C.validate_json(doc)  # the real certificate passes
    doc = json.loads(cert.to_json())
    broken = [
        {**doc, "status": "probably"},
        {**doc, "epsilon": "one"},
        {k: v for k, v in doc.items() if k != "threat"},
        {**doc, "extra": 1},
        {**doc, "removed": -1},
        {**doc, "budget": {"total": 1.0}},
        {**doc, "assumptions": [{**doc["assumptions"][0], "state": "hoped"}]},
        {**doc, "schema": "certun.certificate/1", "valid": "yes"},
    ]
    for bad in broken:
        with pytest.raises(ValueError, match="does not match its schema"):
            C.validate_json(bad)


def test_every_emitted_certificate_is_checked():
    """The conftest hook is active: building a certificate with a bad field fails."""
    assert getattr(C.Certificate.__post_init__, "_schema_checked", False)
    # a field the dataclass accepts but the schema forbids (a negative release count)
    with pytest.raises(ValueError, match="does not match its schema"):
        C.make_certificate(mechanism="x", epsilon=1.0, delta=1e-5, sigma=1.0, threat="none",
                           adjacency="removal", scale="mean", calibration="none",
                           removed=-2, assumptions=[])
