"""A durable deletion ledger: the model, the unlearner state and every request, crash-safe.

A model owner serves deletion requests one by one for the life of a model; each must be
certified, recorded and never lost. :class:`Ledger` keeps, in one directory,

* the unlearner's configuration (hyperparameters of
  :func:`certun.unlearners.certified_removal`) and the dataset's description;
* the full unlearner state (a :class:`~certun.unlearners.GuoState`: training rows,
  published model, the private objective perturbation ``b``, the cached factors,
  the residual bound), enough to reproduce the in-memory state **bit for bit**;
* a journal with one record per event: record 0 is the training, record ``j >= 1``
  the ``j``-th deletion request (indices, outcome, the public and the private parts
  of its certificate, budget used and left, UTC time, package version, timings).

**On-disk format** (``FORMAT = "certun.ledger/1"``)::

    DIR/LEDGER                 format marker (JSON), written at creation
    DIR/CURRENT                name of the committed manifest, e.g. "gen-00000007.json"
    DIR/gen-00000007.json      manifest of generation 7: config, public summary, and for
                               every state field its bundle, dtype, shape and SHA-256
    DIR/arrays/00000007.npz    the state fields that changed in generation 7 (an unchanged
                               array stays in the bundle of the generation that wrote it)
    DIR/records/00000007.json  journal record 7 ({"public": ..., "private": ...})
    DIR/.lock                  advisory lock serialising writers (fcntl)

Generation ``g`` consists of records ``0..g``. **Commit protocol** of a request
(generation ``g -> g + 1``), every file written to a temporary name, flushed,
``fsync``-ed, renamed into place and its directory ``fsync``-ed
(:func:`certun.io.atomic_write_bytes`):

1. the arrays that changed, one bundle ``arrays/{g+1}.npz``;
2. the record ``records/{g+1}.json``;
3. the manifest ``gen-{g+1}.json``;
4. ``CURRENT`` (the **commit point**: one atomic rename);
5. clean-up (best effort): the old manifest, bundles no longer referenced, stray temporaries.

A reader follows ``CURRENT`` only, and a generation's files are all durable before
``CURRENT`` names it, so a crash at any point leaves the ledger at generation ``g``
(before the request) or ``g + 1`` (after it), never a mixture; files a crashed
attempt left behind are ignored and overwritten or removed by the next commit.
If writing fails in this process, the in-memory ledger re-reads the disk, so it
agrees with what a fresh :meth:`Ledger.open` would see. Derivation and failure
analysis: ``proofs/ledger_commit_protocol.md``.

**Requests.** A repeated index (already removed), an index out of range, a duplicate
within a request or an empty request raise :class:`certun.ValidationError` and change
nothing. When a request would exceed the removal budget the ledger's unlearner
(``auto_retrain=True``) retrains on the remaining rows with a fresh ``b`` (the next
fold of the key) and a new budget; the record says ``outcome: "retrained"``.

**Privacy.** The directory holds private data (training rows, ``b``, private certificate
parts): protect it like the training set. :meth:`Ledger.status` returns only the
public view (budget, removals, certificate status), safe to publish.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun._version import __version__
from certun.certificate import Certificate
from certun.io import atomic_write_bytes, atomic_write_json, fsync_dir
from certun.unlearners.base import RetrainRequired, UnlearnResult
from certun.unlearners.guo import MECHANISM as GUO_MECHANISM
from certun.unlearners.guo import GuoState, certified_removal

__all__ = ["Ledger", "LedgerError", "FORMAT", "DEFAULT_CONFIG", "CONFIG_KEYS"]

#: Version tag of the on-disk ledger format (checked on load).
FORMAT = "certun.ledger/1"

#: Hyperparameters of :func:`certified_removal` a ledger stores (and their defaults there).
CONFIG_KEYS = ("lam", "sigma", "epsilon", "delta", "loss", "bound", "gamma", "train_tol",
               "train_method", "solve_rtol", "max_cg_steps", "refactor_every", "update",
               "max_rank", "refresh_cost_ratio", "auto_retrain", "remeasure", "factor",
               "neumann_terms")
#: Defaults a ledger uses where :func:`certified_removal` has none or differs.
DEFAULT_CONFIG = {"auto_retrain": True, "update": "cached"}

#: Test seam: called with the name of each step of the write path (see module docstring).
#: Tests set it to raise or to pause the process; ``None`` in normal use.
_FAULT: Callable[[str], None] | None = None

_PRIVATE_DIAGNOSTICS = ("true_residual",)


class LedgerError(RuntimeError):
    """The directory is not a (complete, consistent) certun ledger."""


def _step(name: str) -> None:
    if _FAULT is not None:
        _FAULT(name)


def _utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x


def _sha256(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(memoryview(np.require(arr, requirements="C")).cast("B"))
    return h.hexdigest()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.require(v, requirements="C") for k, v in arrays.items()})
    return buf.getvalue()


# ----------------------------------------------------------------------- state <-> arrays


def _state_fields(state: GuoState) -> tuple[dict[str, Any], dict[str, Any]]:
    """The array-valued state fields (the key as its raw data), and how to rebuild the rest."""
    arrays, special = {}, {}
    for name, val in state._asdict().items():
        if val is None:
            special[name] = None
        elif name == "key":
            special[name] = {"key_impl": str(jax.random.key_impl(val))}
            arrays[name] = np.asarray(jax.random.key_data(val))
        else:
            arrays[name] = val
    return arrays, special


def _state_from_arrays(arrays: dict[str, np.ndarray], special: dict[str, Any]) -> GuoState:
    fields = {}
    for name in GuoState._fields:
        if name in special and special[name] is None:
            fields[name] = None
        elif name == "key":
            fields[name] = jax.random.wrap_key_data(jnp.asarray(arrays[name]),
                                                    impl=special[name]["key_impl"])
        elif name in arrays:
            fields[name] = jnp.asarray(arrays[name])
        else:
            fields[name] = None
    return GuoState(**fields)


# ----------------------------------------------------------------------------- ledger


class Ledger:
    """A deletion ledger in a directory (see the module docstring for the format).

    Create one with :meth:`create` (trains the model) and reopen it with :meth:`open`;
    serve requests with :meth:`forget`. Attributes: ``path``, ``config`` (the
    unlearner's hyperparameters), ``dataset`` (description), ``unlearner``, ``state``
    (the current :class:`~certun.unlearners.GuoState`), ``records`` (the journal, a
    list of ``{"public": ..., "private": ...}`` dicts) and ``generation``.
    """

    def __init__(self, path: Path, config: dict, dataset: dict, state: GuoState,
                 records: list[dict], generation: int, hashes: dict[str, tuple[Any, str]],
                 unlearner: Any = None):
        self.path = path
        self.config = config
        self.dataset = dataset
        self.unlearner = certified_removal(**config) if unlearner is None else unlearner
        self.state = state
        self.records = records
        self.generation = generation
        # field -> (array object, manifest entry): an unchanged array is not rewritten
        self._entries = hashes
        self.last_save_seconds: float | None = None

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(cls, path: str | os.PathLike, X: Any, y: Any, key: jax.Array, *,
               config: dict, num_classes: int | None = None, dataset: dict | None = None,
               public: dict | None = None,
               metrics: Callable[[jax.Array], dict] | None = None) -> Ledger:
        """Train a certified model and write generation 0 of a new ledger at ``path``.

        Args:
          path: a directory that does not exist yet or is empty.
          X: ``(n, d)`` training rows (``||x_i|| <= 1``).
          y: labels or targets, as in ``certified_removal(...).init``.
          key: PRNG key of the perturbation ``b``.
          num_classes: number of classes for one-vs-rest.
          config: keyword arguments of :func:`certified_removal` (``lam``, ``sigma``,
            ``epsilon``, ``delta`` required; :data:`DEFAULT_CONFIG` fills in
            ``auto_retrain=True`` and ``update="cached"``).
          dataset: JSON-able description of the data (name, sizes, ...), public.
          public: further public facts to keep in the training record.
          metrics: ``params -> dict`` of public metrics of the trained model (e.g. test
            accuracy), kept in the training record.

        Raises:
          ValidationError: if ``path`` holds anything, or for invalid hyperparameters/data.
        """
        p = Path(path)
        if p.exists() and (not p.is_dir() or (p / "CURRENT").exists() or (
                any(p.iterdir()) and not (p / "LEDGER").exists())):
            # (a directory with a LEDGER marker but no CURRENT is a creation that crashed)
            raise _validate.ValidationError(
                f"out directory {str(p)!r} exists and is not empty; choose a new directory "
                "(a ledger is never overwritten)")
        unknown = set(config) - set(CONFIG_KEYS)
        if unknown:
            raise _validate.ValidationError(f"config has unknown keys {sorted(unknown)}; "
                                            f"valid keys: {list(CONFIG_KEYS)}")
        missing = [k for k in ("lam", "sigma", "epsilon", "delta") if k not in config]
        if missing:
            raise _validate.ValidationError(
                f"config is missing required key(s) {missing}; pass them, e.g. config=dict("
                "lam=1e-3, sigma=1.0, epsilon=1.0, delta=1e-5, ...)")
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config)
        unl = certified_removal(**cfg)
        t0 = time.perf_counter()
        state = unl.init(X, y, key, num_classes=num_classes)
        jax.block_until_ready(state.W)
        seconds = time.perf_counter() - t0
        budget = {"total": unl_budget(state, cfg), "used": float(state.residual_bound)}
        budget["left"] = budget["total"] - budget["used"]
        public = dict(public or {})
        if metrics is not None:
            public.update(metrics(unl.params(state)))
        d, K = state.W.shape
        ds = dict(dataset or {})
        ds.setdefault("n_train", int(state.X.shape[0]))
        ds.setdefault("d", int(d))
        ds.setdefault("heads", int(K))
        p.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p / "LEDGER", {"format": FORMAT, "created_utc": _utc(),
                                         "version": __version__})
        led = cls(p, cfg, ds, state, [], -1, {}, unlearner=unl)
        rec = {
            "public": {"record": 0, "kind": "train", "utc": _utc(), "version": __version__,
                       "mechanism": GUO_MECHANISM, "outcome": "trained", "removed_total": 0,
                       "n_remaining": int(state.X.shape[0]), "retrains": 0, "budget": budget,
                       "seconds": {"compute": seconds}, **public},
            "private": {"train_grad_norm": float(state.train_grad_norm),
                        "b_norm": float(np.linalg.norm(np.asarray(state.b)))},
        }
        with led._lock():
            led._commit(state, rec)
        return led

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True, unlearner: Any = None) -> Ledger:
        """Load the committed generation of the ledger at ``path``.

        Args:
          path: the ledger directory.
          verify: check every array's SHA-256 against the manifest.
          unlearner: reuse this unlearner (built by ``certified_removal(**ledger.config)``,
            with its compiled functions) instead of building a new one.

        Raises:
          LedgerError: if ``path`` is not a complete certun ledger, or a file is
            missing or corrupt.
        """
        p = Path(path)
        man, arrays, records, gen = _read_generation(p, verify)
        state = _state_from_arrays(arrays, man["special"])
        hashes = {name: (state._asdict()[name], info)
                  for name, info in man["arrays"].items() if name != "key"}
        return cls(p, man["config"], man["dataset"], state, records, gen, hashes, unlearner)

    # ------------------------------------------------------------------ requests
    def forget(self, indices: Any) -> tuple[dict, UnlearnResult]:
        """Serve one deletion request and commit it durably before returning.

        Args:
          indices: rows of the original training set to remove (one summed Newton step).

        Returns:
          ``(record, result)``: the journal record written and the unlearner's
          :class:`~certun.unlearners.UnlearnResult` (outcome ``"unlearned"`` or
          ``"retrained"``).

        Raises:
          ValidationError: for an empty request, an index out of range, repeated or
            already removed (nothing is written).
          RetrainRequired: if the request cannot be certified and the ledger was
            configured with ``auto_retrain=False`` (nothing is written).
          OSError: if the commit fails; the ledger is then re-read from disk.
        """
        with self._lock():
            self._sync()
            t0 = time.perf_counter()
            res = self.unlearner.unlearn(self.state, indices)
            jax.block_until_ready(res.state)  # computation ends here; saving is timed apart
            compute = time.perf_counter() - t0
            if res.outcome == "retrain_required":
                raise RetrainRequired(res.certificate.reason)
            idx = np.sort(np.asarray(indices, np.int64).reshape(-1))
            cert: Certificate = res.certificate
            st = res.state
            n_total = int(st.X.shape[0])
            removed = int(st.n_removed)
            diag = {k: v for k, v in res.diagnostics.items() if k not in _PRIVATE_DIAGNOSTICS}
            rec = {
                "public": {
                    "record": self.generation + 1, "kind": "forget", "utc": _utc(),
                    "version": __version__, "mechanism": cert.mechanism, "outcome": res.outcome,
                    "removed_in_request": int(idx.size), "removed_total": removed,
                    "n_remaining": n_total - removed, "retrains": int(st.retrains),
                    "budget": {"total": cert.budget.total, "used": cert.budget.used,
                               "left": cert.budget.left},
                    "certificate": cert.public(),
                    "seconds": {"compute": compute},
                },
                "private": {"indices": idx.tolist(), "certificate": cert.to_dict(private=True),
                            "diagnostics": _json_safe(diag)},
            }
            self._commit(st, rec)
            return rec, res

    # ------------------------------------------------------------------ views
    @property
    def params(self) -> jax.Array:
        """The published model."""
        return self.unlearner.params(self.state)

    def certificate(self, record: int = -1) -> Certificate | None:
        """The certificate of request ``record`` (private view; ``None`` for the training)."""
        priv = self.records[record]["private"]
        return Certificate.from_dict(priv["certificate"]) if "certificate" in priv else None

    def status(self) -> dict:
        """The public view: budget, removals, certificate status (no private field)."""
        last = self.records[-1]["public"]
        first = self.records[0]["public"]
        cert = last.get("certificate")
        out = {
            "format": FORMAT, "version": __version__, "mechanism": GUO_MECHANISM,
            "model": self.config.get("loss", "logistic"),
            "epsilon": self.config["epsilon"], "delta": self.config["delta"],
            "dataset": {k: v for k, v in self.dataset.items()},
            "generation": self.generation, "requests": len(self.records) - 1,
            "removed": last["removed_total"], "remaining": last["n_remaining"],
            "retrains": last["retrains"], "budget": dict(last["budget"]),
            "certificate": None if cert is None else {
                k: cert[k] for k in ("status", "valid", "reason", "epsilon", "delta", "threat",
                                     "adjacency", "scale", "calibration", "removed")},
            "trained_utc": first["utc"], "last_utc": last["utc"],
        }
        out["certificate_status"] = "none (no removal yet)" if cert is None else cert["status"]
        for k in ("test_accuracy", "test_rmse"):
            if k in first:
                out[k] = first[k]
        return out

    # ------------------------------------------------------------------ storage
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: no inter-process lock
            yield
            return
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _sync(self) -> None:
        """Adopt the committed generation if another process moved it on."""
        cur = _read_current(self.path)
        if cur != _manifest_name(self.generation):
            self._reload()

    def _reload(self) -> None:
        other = Ledger.open(self.path)
        if other.config == self.config:
            other.unlearner = self.unlearner  # same hyperparameters: keep the compiled functions
        self.__dict__.update(other.__dict__)

    def _commit(self, state: GuoState, record: dict) -> None:
        """Write generation ``g + 1`` (``state`` and ``record``) and adopt it."""
        t0 = time.perf_counter()
        self._write(self._prepare(state, record))
        self.last_save_seconds = time.perf_counter() - t0

    def _prepare(self, state: GuoState, record: dict) -> dict:
        """Everything :meth:`_write` needs, as host data (the only step that touches JAX)."""
        g = self.generation + 1
        fields, special = _state_fields(state)
        entries, new_entries, changed = {}, {}, {}
        bundle = f"arrays/{g:08d}.npz"
        for name, obj in fields.items():
            prev = self._entries.get(name)
            if prev is not None and prev[0] is obj:  # unchanged (immutable) array
                entries[name] = prev[1]
            else:
                arr = np.asarray(obj)
                changed[name] = arr
                entries[name] = {"file": bundle, "sha256": _sha256(arr),
                                 "dtype": arr.dtype.str, "shape": list(arr.shape)}
            new_entries[name] = (obj, entries[name])
        record = _json_safe(record)
        manifest = {"format": FORMAT, "generation": g, "n_records": g + 1,
                    "version": __version__, "utc": _utc(), "config": self.config,
                    "dataset": self.dataset, "arrays": entries, "special": special,
                    "public": record["public"]}
        return {"g": g, "state": state, "record": record, "bundle": bundle,
                "bundle_bytes": _npz_bytes(changed) if changed else None,
                "manifest": _json_safe(manifest), "entries": new_entries}

    def _write(self, prep: dict) -> None:
        """The write path (file I/O only): bundle, record, manifest, then ``CURRENT``."""
        g = prep["g"]
        try:
            if prep["bundle_bytes"] is not None:
                _step("bundle")
                atomic_write_bytes(self.path / prep["bundle"], prep["bundle_bytes"])
            _step("arrays_written")
            atomic_write_json(self.path / "records" / f"{g:08d}.json", prep["record"],
                              sort_keys=True)
            _step("record_written")
            atomic_write_json(self.path / _manifest_name(g), prep["manifest"], sort_keys=True)
            _step("manifest_written")
            atomic_write_bytes(self.path / "CURRENT", (_manifest_name(g) + "\n").encode())
            _step("committed")
        except BaseException:
            # whatever happened, agree with the disk: before or after this request
            if (self.path / "CURRENT").exists():
                self._reload()
            raise
        self.state, self.generation = prep["state"], g
        self.records = self.records + [prep["record"]]
        self._entries = prep["entries"]
        self._cleanup(prep["manifest"]["arrays"])

    def _cleanup(self, entries: dict) -> None:
        """Best effort: remove the old manifests, unreferenced arrays and stray temporaries."""
        try:
            _step("cleanup")
            keep = {Path(e["file"]).name for e in entries.values()}
            cur = _manifest_name(self.generation)
            for f in self.path.iterdir():
                if f.name.startswith("gen-") and f.name != cur:
                    f.unlink(missing_ok=True)
                elif f.name.startswith(".") and f.name.endswith(".tmp"):
                    f.unlink(missing_ok=True)
            for f in (self.path / "arrays").iterdir():
                if f.name not in keep:
                    f.unlink(missing_ok=True)
            for f in (self.path / "records").iterdir():
                if f.name.endswith(".tmp") or (f.name[:8].isdigit()
                                               and int(f.name[:8]) > self.generation):
                    f.unlink(missing_ok=True)
            fsync_dir(self.path)
        except Exception:  # noqa: BLE001 - clean-up never undoes a commit
            pass


def unl_budget(state: GuoState, cfg: dict) -> float:
    """The removal budget ``sigma epsilon / c`` of a configuration."""
    from certun.accounting.gaussian import guo_budget

    return float(guo_budget(cfg["sigma"], cfg["epsilon"], cfg["delta"]))


def _manifest_name(g: int) -> str:
    return f"gen-{g:08d}.json"


def _read_current(p: Path) -> str:
    try:
        return (p / "CURRENT").read_text().strip()
    except FileNotFoundError:
        raise LedgerError(
            f"{str(p)!r} is not a certun ledger (no CURRENT file); create one with "
            "`certun train --out DIR`") from None


def _read_generation(p: Path, verify: bool, attempts: int = 3):
    """Load the generation ``CURRENT`` names (retrying if a concurrent commit moved it on)."""
    for attempt in range(attempts):
        name = _read_current(p) if p.is_dir() else None
        try:
            return _read_generation_once(p, verify)
        except LedgerError:
            if attempt + 1 == attempts or name is None or _read_current(p) == name:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _read_generation_once(p: Path, verify: bool):
    if not p.is_dir():
        raise LedgerError(f"{str(p)!r} is not a directory; give the ledger directory")
    try:
        marker = json.loads((p / "LEDGER").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise LedgerError(f"{str(p)!r} is not a certun ledger (no LEDGER marker)") from None
    if marker.get("format") != FORMAT:
        raise LedgerError(
            f"unsupported ledger format {marker.get('format')!r}; expected {FORMAT!r}")
    name = _read_current(p)
    try:
        man = json.loads((p / name).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise LedgerError(
            f"manifest {name!r} named by CURRENT is missing or corrupt: {exc}") from None
    gen = int(man["generation"])
    arrays, bundles = {}, {}
    for field, info in man["arrays"].items():
        try:
            if info["file"] not in bundles:
                bundles[info["file"]] = np.load(p / info["file"], allow_pickle=False)
            arr = bundles[info["file"]][field]
        except (OSError, ValueError, KeyError) as exc:
            raise LedgerError(
                f"array {field!r} ({info['file']}) is missing or corrupt: {exc}") from None
        if arr.dtype.str != info["dtype"] or list(arr.shape) != info["shape"] or (
                verify and _sha256(arr) != info["sha256"]):
            raise LedgerError(f"array {field!r} ({info['file']}) does not match the manifest")
        arrays[field] = arr
    records = []
    for j in range(gen + 1):
        try:
            rec = json.loads((p / "records" / f"{j:08d}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            raise LedgerError(f"journal record {j} is missing or corrupt: {exc}") from None
        if rec["public"]["record"] != j:
            raise LedgerError(f"journal record {j} is numbered {rec['public']['record']}")
        records.append(rec)
    for b in bundles.values():
        b.close()
    if records[-1]["public"] != man["public"]:
        raise LedgerError(f"journal record {gen} does not match manifest {name!r}")
    return man, arrays, records, gen
