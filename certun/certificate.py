"""Certificates: what an unlearned model is guaranteed to satisfy, and why.

Every certun unlearner returns a :class:`Certificate` with the new model. A
certificate is a claim with its evidence:

* ``status`` is ``"holds"`` when every assumption it rests on was verified,
  ``"conditional"`` when it holds provided the listed *assumed* constants hold
  (e.g. a Hessian Lipschitz constant nobody can check), and ``"fails"`` when an
  assumption was checked and found false, or a budget is spent (``reason`` then
  says which). ``valid`` is true exactly when ``status == "holds"``. The status
  is *derived* from the assumptions by :func:`make_certificate`, so the two can
  never disagree.
* ``threat`` states which adversary is covered. ``"indistinguishable_from_retraining"``
  (certified removal) bounds how well an observer of the *unlearned* model can tell
  it apart from a model retrained without the data; it does **not** hide the
  deletion from someone who saw the model before and after (Guo et al.'s
  perturbation ``b`` is shared by both versions and cancels in their difference).
  ``"private_release"`` means every published model carries fresh calibrated noise.
* ``scale`` says which loss scale the bounds and budget use: ``"sum"`` (the sum
  over examples, as in Guo et al.'s residual bounds) or ``"mean"`` (the mean loss
  plus ``(lam/2)||w||^2``, certun's public objective). :mod:`certun.scale`
  converts between them.
* The certificate has a **public view** and a **private view**. The public view
  holds data-independent fields only: mechanism, status, epsilon/delta (per
  release and composed), sigma, threat, adjacency, scale, calibration,
  conversion, the sensitivity (mechanisms set it only when it is computed from
  public quantities), the numbers of releases and removed rows (requests are
  public), the budget's *total* and unit (never the amount used or left: that is
  a data-dependent residual), ``public_inputs`` (the public quantities the noise
  scale is computed from, with the adjacency), the assumption names, states and
  statements (values of private assumptions withheld) and notes free of
  data-dependent numbers. The private view adds everything that reveals the
  data (residual bounds, budget used, the norm of the perturbation ``b``, solver
  residuals). ``proofs/README.md`` ("Noise scales and public fields") shows, for
  every mechanism, that each public field depends on public quantities only.
  See :meth:`Certificate.public`.

The JSON form is versioned (``schema``); :func:`Certificate.from_json` reads it
back exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from certun._version import __version__

__all__ = [
    "SCHEMA",
    "STATUSES",
    "THREATS",
    "ADJACENCIES",
    "Assumption",
    "Budget",
    "Certificate",
    "make_certificate",
    "derive_status",
    "verified",
    "assumed",
    "failed",
    "check",
    "json_schema",
    "validate_json",
]

#: Version tag written into every certificate's JSON (``schema`` field); the JSON Schema of
#: this version ships with the package as ``certun/schemas/certificate-1.schema.json``
#: (:func:`json_schema`, :func:`validate_json`).
SCHEMA = "certun.certificate/1"
#: Certificate states: all assumptions verified, holds if named assumed constants hold, or fails.
STATUSES = ("holds", "conditional", "fails")
#: States of one assumption a certificate rests on.
ASSUMPTION_STATES = ("verified", "assumed", "failed")
#: Threats a certificate can cover (``none`` for uncertified, empirical releases).
THREATS = ("indistinguishable_from_retraining", "private_release", "none")
#: Neighbouring-dataset relations: remove one record, or replace it.
ADJACENCIES = ("removal", "replacement")
SCALES = ("sum", "mean")


def _clean(x: Any) -> Any:
    """Convert NumPy / JAX scalars and containers to JSON-friendly Python values."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    try:
        import numpy as np

        arr = np.asarray(x)
        if arr.ndim == 0:
            v = arr.item()
            if isinstance(v, float) and not math.isfinite(v):
                return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
            return v
        return [_clean(v) for v in arr.tolist()]
    except Exception:  # pragma: no cover
        return str(x)


def _req(x: Any) -> float:
    """A required number of a certificate's JSON form (``"inf"``/``"nan"`` strings allowed)."""
    v = _float(x)
    if v is None:
        raise ValueError(f"certificate field must be a number, got {x!r}")
    return v


def _float(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, str):
        return float(x)  # "inf", "nan"
    return float(x)


@dataclasses.dataclass(frozen=True)
class Assumption:
    """One assumption a certificate rests on.

    Attributes:
      name: short identifier, e.g. ``"unit_rows"``.
      state: ``"verified"`` (checked and true), ``"assumed"`` (cannot be checked;
        the certificate is conditional on it) or ``"failed"`` (checked and false).
      statement: the assumption in words/math, e.g. ``"||x_i||_2 <= 1 for all i"``.
      value: the measured (or assumed) value, if any.
      limit: the threshold it was compared with, if any.
      private: whether ``value``/``limit`` reveal data and belong to the private view.
    """

    name: str
    state: str
    statement: str
    value: float | None = None
    limit: float | None = None
    private: bool = False

    def __post_init__(self) -> None:
        if self.state not in ASSUMPTION_STATES:
            raise ValueError(
                f"Assumption.state must be one of {ASSUMPTION_STATES}, got {self.state!r}")

    def to_dict(self, private: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``value``/``limit`` are dropped from the public view if private."""
        d = {"name": self.name, "state": self.state, "statement": self.statement,
             "private": self.private}
        if private or not self.private:
            d["value"] = _clean(self.value)
            d["limit"] = _clean(self.limit)
        return d


def verified(name: str, statement: str, value: float | None = None,
             limit: float | None = None, private: bool = False) -> Assumption:
    """Shorthand for an :class:`Assumption` in state ``"verified"``."""
    return Assumption(name, "verified", statement, value, limit, private)


def assumed(name: str, statement: str, value: float | None = None,
            limit: float | None = None, private: bool = False) -> Assumption:
    """Shorthand for an :class:`Assumption` in state ``"assumed"``."""
    return Assumption(name, "assumed", statement, value, limit, private)


def failed(name: str, statement: str, value: float | None = None,
           limit: float | None = None, private: bool = False) -> Assumption:
    """Shorthand for an :class:`Assumption` in state ``"failed"``."""
    return Assumption(name, "failed", statement, value, limit, private)


def check(name: str, statement: str, ok: bool, value: float | None = None,
          limit: float | None = None, private: bool = False) -> Assumption:
    """An assumption that was checked: ``verified`` if ``ok`` else ``failed``."""
    return Assumption(name, "verified" if ok else "failed", statement, value, limit, private)


@dataclasses.dataclass(frozen=True)
class Budget:
    """A finite resource a certificate consumes (e.g. Guo et al.'s residual budget).

    Attributes:
      total: the budget, e.g. ``sigma * epsilon / c`` for Guo et al.
      used: how much is spent so far (must stay ``<= total``).
      unit: what is counted, including its loss scale.
    """

    total: float
    used: float
    unit: str

    @property
    def left(self) -> float:
        """Remaining budget ``total - used`` (negative when overspent)."""
        return self.total - self.used

    @property
    def exhausted(self) -> bool:
        """Whether ``used > total``."""
        return not (self.used <= self.total)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with the derived ``left``)."""
        return {"total": _clean(self.total), "used": _clean(self.used),
                "left": _clean(self.left), "unit": self.unit}


def derive_status(assumptions: Sequence[Assumption], budget: Budget | None = None,
                  extra_failure: str | None = None) -> tuple[str, str]:
    """Status and reason implied by the assumptions and budget.

    ``fails`` if any assumption failed, the budget is exhausted, or
    ``extra_failure`` is given; else ``conditional`` if any is assumed; else ``holds``.
    """
    reasons = [f"{a.name}: {a.statement}" for a in assumptions if a.state == "failed"]
    if budget is not None and budget.exhausted:
        # public: the amount used is data-dependent and stays in the private view
        reasons.append(f"budget exhausted ({budget.unit}; the amount used is private)")
    if extra_failure:
        reasons.append(extra_failure)
    if reasons:
        return "fails", "; ".join(reasons)
    conds = [a.name for a in assumptions if a.state == "assumed"]
    if conds:
        return "conditional", "holds if the assumed constants hold: " + ", ".join(conds)
    return "holds", ""


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A checked (epsilon, delta) claim about a released model.

    Build one with :func:`make_certificate`, which derives ``status`` from the
    assumptions. Fields are documented in the module docstring; in short:

    Attributes:
      mechanism: which algorithm produced the model (e.g. ``"guo2020_certified_removal"``).
      status: ``"holds"``, ``"conditional"`` or ``"fails"``.
      reason: why it fails / what it is conditional on (empty when it holds); public, so
        mechanisms word it without data-dependent numbers.
      epsilon, delta: the guarantee per release.
      sigma: the Gaussian noise standard deviation the guarantee uses.
      threat: the adversary covered (see module docstring).
      adjacency: ``"removal"`` (D vs D minus the forgotten set) or ``"replacement"``.
      scale: loss scale of the bounds and budget (``"sum"`` or ``"mean"``).
      calibration: how sigma relates to (epsilon, delta, sensitivity):
        ``"guo_c"``, ``"analytic_gaussian"``, ``"classic_gaussian"``, ``"rdp"``, ...
      conversion: the RDP-to-DP conversion where one is used, else ``None``.
      sensitivity: the (data-independent) L2 sensitivity the noise is calibrated to, if any.
      releases: how many models this guarantee has been spent on so far.
      epsilon_composed, delta_composed: the guarantee for an observer of all
        ``releases`` models, where releases compose (``None`` when they do not).
      budget: a finite budget being consumed, if any.
      removed: number of training rows removed so far.
      assumptions: what the guarantee rests on, each verified/assumed/failed.
      bounds: the error bounds used (private: they reveal the deleted data's influence).
      solver: solver diagnostics (private).
      private: other private quantities (e.g. ``||b||``, true residuals).
      public_inputs: the public quantities the noise scale and the public numbers are
        computed from (e.g. ``adjacency``, ``n``, ``lam``), part of the public view.
      notes: free-text remarks (public; no data-dependent numbers).
      version: certun version that issued it.
    """

    mechanism: str
    status: str
    reason: str
    epsilon: float
    delta: float
    sigma: float
    threat: str
    adjacency: str
    scale: str
    calibration: str
    conversion: str | None = None
    sensitivity: float | None = None
    releases: int = 1
    epsilon_composed: float | None = None
    delta_composed: float | None = None
    budget: Budget | None = None
    removed: int = 0
    assumptions: tuple[Assumption, ...] = ()
    bounds: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    solver: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    private: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    public_inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    version: str = __version__
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.threat not in THREATS:
            raise ValueError(f"threat must be one of {THREATS}, got {self.threat!r}")
        if self.adjacency not in ADJACENCIES:
            raise ValueError(f"adjacency must be one of {ADJACENCIES}, got {self.adjacency!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")

    @property
    def valid(self) -> bool:
        """True exactly when ``status == "holds"``."""
        return self.status == "holds"

    def public(self) -> dict[str, Any]:
        """The public view: safe to publish next to the model.

        Contains mechanism, status, validity, the reason, epsilon/delta (per
        release and composed), sigma, threat, adjacency, scale, calibration,
        conversion, sensitivity, releases, the number of removals, the budget's
        total and unit (not the amount used or left, which is data-dependent),
        ``public_inputs``, the assumptions (values of private ones withheld) and
        the notes. Every field is data-independent given the public inputs.
        """
        d: dict[str, Any] = {
            "schema": self.schema,
            "version": self.version,
            "mechanism": self.mechanism,
            "status": self.status,
            "valid": self.valid,
            "reason": self.reason,
            "epsilon": _clean(self.epsilon),
            "delta": _clean(self.delta),
            "sigma": _clean(self.sigma),
            "threat": self.threat,
            "adjacency": self.adjacency,
            "scale": self.scale,
            "calibration": self.calibration,
            "conversion": self.conversion,
            "sensitivity": _clean(self.sensitivity),
            "releases": self.releases,
            "epsilon_composed": _clean(self.epsilon_composed),
            "delta_composed": _clean(self.delta_composed),
            "removed": self.removed,
            "budget": None if self.budget is None else {
                "total": _clean(self.budget.total), "unit": self.budget.unit},
            "public_inputs": _clean(dict(self.public_inputs)),
            "assumptions": [a.to_dict(private=False) for a in self.assumptions],
            "notes": list(self.notes),
        }
        return d

    def to_dict(self, private: bool = True) -> dict[str, Any]:
        """JSON-ready dict: the private view by default, the public one otherwise."""
        if not private:
            return self.public()
        d = self.public()
        d["view"] = "private"
        d["budget"] = None if self.budget is None else self.budget.to_dict()
        d["assumptions"] = [a.to_dict(private=True) for a in self.assumptions]
        d["bounds"] = _clean(dict(self.bounds))
        d["solver"] = _clean(dict(self.solver))
        d["private"] = _clean(dict(self.private))
        return d

    def to_json(self, private: bool = True, **kwargs: Any) -> str:
        """Serialise to JSON (private view by default); see :meth:`from_json`."""
        kwargs.setdefault("indent", 2)
        kwargs.setdefault("sort_keys", True)
        return json.dumps(self.to_dict(private=private), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Certificate:
        """Rebuild a certificate from :meth:`to_dict` output (private view).

        A public view can be read too; the private fields then come back empty and
        the budget's ``used`` is NaN (unknown).
        """
        schema = d.get("schema")
        if schema != SCHEMA:
            raise ValueError(f"unsupported certificate schema {schema!r}; expected {SCHEMA!r}")
        b = d.get("budget")
        budget = None
        if b is not None:
            used = b.get("used")
            if used is None:  # public view: the amount used is private
                used = math.nan
            budget = Budget(_req(b["total"]), _req(used), b["unit"])
        assumptions = tuple(
            Assumption(a["name"], a["state"], a["statement"], _float(a.get("value")),
                       _float(a.get("limit")), bool(a.get("private", "value" not in a)))
            for a in d.get("assumptions", [])
        )
        return cls(
            mechanism=d["mechanism"], status=d["status"], reason=d.get("reason", ""),
            epsilon=_req(d["epsilon"]), delta=_req(d["delta"]), sigma=_req(d["sigma"]),
            threat=d["threat"], adjacency=d["adjacency"], scale=d["scale"],
            calibration=d["calibration"], conversion=d.get("conversion"),
            sensitivity=_float(d.get("sensitivity")), releases=int(d.get("releases", 1)),
            epsilon_composed=_float(d.get("epsilon_composed")),
            delta_composed=_float(d.get("delta_composed")), budget=budget,
            removed=int(d.get("removed", 0)), assumptions=assumptions,
            bounds=dict(d.get("bounds", {})), solver=dict(d.get("solver", {})),
            private=dict(d.get("private", {})), notes=tuple(d.get("notes", ())),
            public_inputs=dict(d.get("public_inputs", {})),
            version=d.get("version", __version__), schema=schema,
        )

    @classmethod
    def from_json(cls, text: str) -> Certificate:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """A few human-readable lines (public information only)."""
        lines = [
            f"{self.mechanism}: {self.status.upper()}"
            + (f" ({self.reason})" if self.reason else ""),
            f"  ({self.epsilon:g}, {self.delta:g})-{self.adjacency} guarantee, "
            f"threat: {self.threat}",
            f"  sigma = {self.sigma:.6g} [{self.calibration}], scale: {self.scale}",
        ]
        if self.budget is not None:
            lines.append(f"  budget total: {self.budget.total:.6g} ({self.budget.unit})")
        for a in self.assumptions:
            lines.append(f"  [{a.state:>8}] {a.name}: {a.statement}")
        return "\n".join(lines)


def make_certificate(*, assumptions: Sequence[Assumption], budget: Budget | None = None,
                     extra_failure: str | None = None, **fields: Any) -> Certificate:
    """Build a :class:`Certificate` whose status is derived from its assumptions.

    Args:
      assumptions: every assumption the guarantee rests on.
      budget: the budget consumed, if any (an exhausted budget makes it ``fails``).
      extra_failure: a further reason the certificate fails (e.g. "solver did not converge").
      **fields: the remaining :class:`Certificate` fields (not ``status``/``reason``).
    """
    if "status" in fields or "reason" in fields:
        raise TypeError("status and reason are derived; do not pass them")
    status, reason = derive_status(assumptions, budget, extra_failure)
    return Certificate(status=status, reason=reason, assumptions=tuple(assumptions),
                       budget=budget, **fields)


def json_schema(version: str = SCHEMA) -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of a certificate version.

    The schema ships inside the package (``certun/schemas/certificate-<N>.schema.json``);
    its ``$id`` is the version tag written in every certificate's ``schema`` field.

    Args:
      version: ``"certun.certificate/<N>"`` (default: the current :data:`SCHEMA`).

    Returns:
      The schema as a dict.
    """
    from importlib import resources

    prefix = "certun.certificate/"
    if not version.startswith(prefix) or not version[len(prefix):].isdigit():
        raise ValueError(f"unknown certificate schema version {version!r}; expected {SCHEMA!r}")
    name = f"certificate-{version[len(prefix):]}.schema.json"
    try:
        text = resources.files("certun").joinpath("schemas", name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no published schema for {version!r}") from None
    return json.loads(text)


def validate_json(document: Mapping[str, Any]) -> None:
    """Check a certificate's JSON form (public or private view) against its published schema.

    Uses ``jsonschema`` when it is installed and a built-in validator for the subset of JSON
    Schema the certificate schema uses otherwise; both report every violation.

    Args:
      document: a parsed certificate (``json.loads(cert.to_json())`` or ``cert.to_dict()``).

    Raises:
      ValueError: naming each violation (path and reason).
    """
    schema = json_schema(str(document.get("schema", SCHEMA)) if isinstance(document, Mapping)
                         else SCHEMA)
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - exercised by tests through _mini_validate
        errors = _mini_validate(document, schema, schema, "$")
    else:
        validator = jsonschema.Draft202012Validator(schema)
        errors = [f"${''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}"
                  for e in validator.iter_errors(document)]
    if errors:
        raise ValueError("certificate does not match its schema:\n  " + "\n  ".join(errors))


_TYPES: dict[str, Any] = {"object": Mapping, "array": (list, tuple), "string": str,
                          "boolean": bool, "null": type(None)}


def _type_ok(x: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(x, int) and not isinstance(x, bool)
    if t == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    return isinstance(x, _TYPES[t])


def _mini_validate(x: Any, s: Mapping[str, Any], root: Mapping[str, Any], path: str
                   ) -> list[str]:
    """Validate ``x`` with the JSON Schema keywords the certificate schema uses.

    Those are $ref, type, const, enum, oneOf, required, properties, additionalProperties,
    items, minimum and minLength.
    """
    if "$ref" in s:
        ref = s["$ref"]
        node: Any = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return _mini_validate(x, node, root, path)
    errs: list[str] = []
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_type_ok(x, t) for t in types):
            return [f"{path}: {x!r} is not of type {types}"]
    if "const" in s and x != s["const"]:
        errs.append(f"{path}: {x!r} is not {s['const']!r}")
    if "enum" in s and x not in s["enum"]:
        errs.append(f"{path}: {x!r} is not one of {s['enum']}")
    if "oneOf" in s:
        ok = [sub for sub in s["oneOf"] if not _mini_validate(x, sub, root, path)]
        if len(ok) != 1:
            errs.append(f"{path}: {x!r} matches {len(ok)} of the oneOf alternatives, not 1")
    if "minimum" in s and _type_ok(x, "number") and x < s["minimum"]:
        errs.append(f"{path}: {x!r} is less than {s['minimum']}")
    if "minLength" in s and isinstance(x, str) and len(x) < s["minLength"]:
        errs.append(f"{path}: {x!r} is too short")
    if isinstance(x, Mapping):
        for k in s.get("required", ()):
            if k not in x:
                errs.append(f"{path}: {k!r} is a required property")
        props = s.get("properties", {})
        for k, v in x.items():
            if k in props:
                errs += _mini_validate(v, props[k], root, f"{path}[{k!r}]")
            elif s.get("additionalProperties", True) is False:
                errs.append(f"{path}: additional property {k!r} is not allowed")
    if isinstance(x, (list, tuple)) and "items" in s:
        for i, v in enumerate(x):
            errs += _mini_validate(v, s["items"], root, f"{path}[{i}]")
    return errs
