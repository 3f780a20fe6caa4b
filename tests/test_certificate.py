"""Certificate status derivation, views and the versioned JSON form."""

import json
import math

import pytest

from certun.certificate import (
    SCHEMA,
    Budget,
    Certificate,
    assumed,
    check,
    failed,
    make_certificate,
    verified,
)

BASE = dict(mechanism="test", epsilon=1.0, delta=1e-5, sigma=2.0,
            threat="indistinguishable_from_retraining", adjacency="removal", scale="mean",
            calibration="analytic_gaussian")


def test_status_is_derived_from_assumptions():
    ok = make_certificate(assumptions=[verified("a", "x")], **BASE)
    assert ok.status == "holds" and ok.valid and ok.reason == ""
    cond = make_certificate(
        assumptions=[verified("a", "x"), assumed("M", "Hessian Lipschitz", 1.0)], **BASE)
    assert cond.status == "conditional" and not cond.valid and "M" in cond.reason
    bad = make_certificate(assumptions=[assumed("M", "y"), failed("lam", "lambda too small")],
                           **BASE)
    assert bad.status == "fails" and not bad.valid and "lam" in bad.reason
    spent = make_certificate(assumptions=[verified("a", "x")], budget=Budget(1.0, 1.5, "u"), **BASE)
    assert spent.status == "fails" and "budget" in spent.reason
    assert "1.5" not in spent.reason  # the reason is public: no amount used in it
    assert "1.5" not in spent.summary() and "1.5" in spent.to_json()
    assert check("c", "s", True).state == "verified" and check("c", "s", False).state == "failed"
    with pytest.raises(TypeError):
        make_certificate(assumptions=[], status="holds", **BASE)


def test_invalid_fields_are_rejected():
    with pytest.raises(ValueError, match="status"):
        Certificate(status="ok", reason="", **BASE)
    with pytest.raises(ValueError, match="threat"):
        Certificate(status="holds", reason="", **{**BASE, "threat": "everything"})
    with pytest.raises(ValueError, match="scale"):
        Certificate(status="holds", reason="", **{**BASE, "scale": "per-example"})
    with pytest.raises(ValueError, match="state"):
        verified("a", "x").__class__("a", "maybe", "x")


def test_json_roundtrip_and_public_view():
    c = make_certificate(
        assumptions=[verified("unit_rows", "||x||<=1"), verified("grad", "g", 1e-12, private=True)],
        budget=Budget(2.28, 0.5, "sum-scale residual"), bounds={"step": 0.1, "list": [1, 2]},
        solver={"iterations": 3}, private={"b_norm": 12.5}, releases=2, epsilon_composed=1.4,
        delta_composed=1e-5, notes=("n",), public_inputs={"n": 10, "lam": 0.1}, **BASE)
    text = c.to_json()
    d = json.loads(text)
    assert d["schema"] == SCHEMA and d["valid"] is True and d["view"] == "private"
    back = Certificate.from_json(text)
    assert back == Certificate(**{**c.__dict__, "bounds": {"step": 0.1, "list": [1, 2]}})
    assert back.to_dict() == c.to_dict()
    pub = json.loads(c.to_json(private=False))
    assert set(pub) >= {"epsilon", "delta", "mechanism", "status", "budget", "valid", "threat"}
    # the budget's total is public; the amount used (and left) is a data-dependent residual
    assert pub["budget"] == {"total": 2.28, "unit": "sum-scale residual"}
    assert "0.5" not in json.dumps(pub) and "1.78" not in json.dumps(pub)
    assert "b_norm" not in json.dumps(pub) and "bounds" not in pub
    assert pub["public_inputs"] == {"n": 10, "lam": 0.1}
    assert "value" not in [a for a in pub["assumptions"] if a["name"] == "grad"][0]
    # a public view reads back too (private parts empty)
    pb = Certificate.from_dict(pub)
    assert pb.valid and pb.budget.total == 2.28 and pb.private == {}
    assert math.isnan(pb.budget.used) and math.isnan(pb.budget.left)
    with pytest.raises(ValueError, match="schema"):
        Certificate.from_dict({**d, "schema": "other/9"})


def test_infinite_values_survive_json():
    c = make_certificate(assumptions=[], **{**BASE, "epsilon": float("inf")})
    assert Certificate.from_json(c.to_json()).epsilon == float("inf")
