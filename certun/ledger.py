"""A durable deletion ledger: the model, the unlearner state and every request, crash-safe.

A model owner serves deletion requests one by one for the life of a model; each must be
certified, recorded, never lost, and the deleted rows must really leave the disk.
:class:`Ledger` keeps, in one directory,

* the unlearner's configuration (hyperparameters of
  :func:`certun.unlearners.certified_removal`) and the dataset's description;
* the unlearner state (a :class:`~certun.unlearners.GuoState`), always **folded**: the
  cached factor's buffer of removed rows is folded into the factorisation before a
  generation is written (:meth:`GuoUnlearner.fold`; with ``update="pcg"`` the curvature
  is refactorised instead), and the removed rows of ``X`` and ``Y`` are zeroed, in the
  files and in memory; the state on disk equals the one in memory **bit for bit**;
* a journal with one record per event: record 0 is the training, record ``j >= 1``
  the ``j``-th deletion request, each with a ``"public"`` part (see *Public view*)
  and a ``"private"`` part (indices, outcome, budget used, the private certificate,
  timings), chained by SHA-256.

**What the directory keeps** after a request commits (and nothing else):

* the **retained rows** (``X``, ``Y``; a removed row is all zeros in every file) and the
  masks of present rows;
* ``b`` (the private objective perturbation), the PRNG key, the published model ``W``;
* the **model at the factorisation point** ``W_factor`` -- trained or stepped *with* the
  removed rows until the next refresh, re-factorisation or retrain -- and the curvature
  at it, **of the retained rows only** (``curv``; the factor ``eigvecs``/``eigvals`` or
  ``inv`` of it; the Gram matrix ``gram`` of the retained rows): every aggregate
  excludes the removed rows' outer products to rounding;
* scalars: the residual bound, counters, ``||X||_F^2`` and a bound on ``||X||_2`` of
  the original data (norms, not rows), the refresh policy's sums;
* the journal: the removed **indices** (not the rows), outcomes, certificates.

No file holds a removed row, its label, or its projection on a factor (the buffers
``rows_buf``, ``h_buf``, ``proj_buf``, ``cap_buf`` are empty in every stored generation
and are not written), in any generation or temporary file: the previous generation's
files are deleted once the new one is committed, and files a crash left behind are
deleted by the next writer or :meth:`Ledger.open`. What is *published* -- the model
``W`` -- is what Guo et al.'s certificate covers (indistinguishable from retraining
without the rows); ``W_factor`` and the curvature at it are private state, never
published. Unlinked blocks are the file system's business (this module does not
overwrite freed disk space). Argument: ``proofs/ledger_commit_protocol.md``.

**On-disk format** (``FORMAT = "certun.ledger/2"``)::

    DIR/LEDGER                          format marker (JSON), written at creation
    DIR/CURRENT                         "gen-00000007.json <SHA-256 of that manifest>"
    DIR/gen-00000007.json               manifest of generation 7: config, public summary,
                                        every state field's file, dtype, shape, and the
                                        SHA-256 of every file it references
    DIR/arrays/00000007.npz             the non-row state fields of generation 7
    DIR/rows/X-000003-00000007.npy      rows 3*4096 .. 4*4096-1 of X as of generation 7
                                        (also Y, mask, factor_mask); a commit rewrites only
                                        the chunks whose rows it removed
    DIR/records/00000007.json           journal record 7 ({"public", "private",
                                        "prev_sha256": SHA-256 of record 6's file})
    DIR/.lock                           advisory lock serialising writers (fcntl)

**Creation** (:meth:`Ledger.create`, ``certun train --out``) builds generation 0 in a
temporary sibling directory and renames it into place, so it never writes into a
directory that holds anything: of two concurrent creations one wins and the other
gets a :class:`certun.ValidationError`.

**Commit protocol** of a request (generation ``g -> g + 1``), every file written to a
temporary name, flushed, ``fsync``-ed, renamed into place and its directory ``fsync``-ed
(:func:`certun.io.atomic_write_bytes`):

1. the changed row chunks and the bundle ``arrays/{g+1}.npz``;
2. the record ``records/{g+1}.json``;
3. the manifest ``gen-{g+1}.json``;
4. ``CURRENT`` (the **commit point**: one atomic rename);
5. clean-up: every file the new manifest does not reference (the old manifest, the
   replaced chunks holding the removed rows, the old bundle, stray temporaries).

A reader follows ``CURRENT`` only, and a generation's files are all durable before
``CURRENT`` names it, so a crash at any point leaves the ledger at generation ``g``
(before the request) or ``g + 1`` (after it), never a mixture.

**Integrity.** ``CURRENT`` holds the manifest's SHA-256, the manifest the SHA-256 of every
file it references and of the last journal record, and every record that of the one
before; :meth:`Ledger.open` checks them all (``verify=True``), and any damage -- a
flipped byte, a truncated file, a manifest missing a key or edited, a record edited to
other valid JSON -- raises :class:`LedgerError` naming the file. Only the current
generation exists (older ones held the removed rows), so damage is repaired from a
backup; :func:`verify` (``certun verify DIR``) checks every checksum and replays the
journal against the state.

**Requests.** A repeated index (already removed), an index out of range, a duplicate
within a request or an empty request raise :class:`certun.ValidationError` and change
nothing. When a request would exceed the removal budget the ledger's unlearner
(``auto_retrain=True``) retrains on the remaining rows with a fresh ``b`` (the next
fold of the key) and a new budget (recorded in the private part).

**Public view.** :meth:`Ledger.status`, ``certun status --json`` and every record's
``"public"`` part hold only :data:`PUBLIC_KEYS`: hyperparameters, ``epsilon``/``delta``/
``sigma``, counts (requests, removed, remaining), the budget **total**
``sigma epsilon / c`` (a function of the configuration), the certificate's public view
with its budget reduced to the total, timestamps and held-out test metrics. The budget
used and left, retrains and the outcome of each request (unlearned or retrained),
compute times and all bounds depend on the private data and stay private. The directory
as a whole is private: protect it like the training set.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun._version import __version__
from certun.certificate import Certificate
from certun.io import atomic_write_bytes, fsync_dir
from certun.unlearners.base import RetrainRequired, UnlearnResult
from certun.unlearners.guo import MECHANISM as GUO_MECHANISM
from certun.unlearners.guo import GuoState, certified_removal

__all__ = ["Ledger", "LedgerError", "FORMAT", "DEFAULT_CONFIG", "CONFIG_KEYS", "CHUNK_ROWS",
           "PUBLIC_KEYS", "verify"]

#: Version tag of the on-disk ledger format (checked on load).
FORMAT = "certun.ledger/2"

#: Hyperparameters of :func:`certified_removal` a ledger stores (and their defaults there).
CONFIG_KEYS = ("lam", "sigma", "epsilon", "delta", "loss", "bound", "gamma", "train_tol",
               "train_method", "solve_rtol", "max_cg_steps", "refactor_every", "update",
               "max_rank", "refresh_cost_ratio", "auto_retrain", "remeasure", "factor",
               "neumann_terms")
#: Defaults a ledger uses where :func:`certified_removal` has none or differs.
DEFAULT_CONFIG = {"auto_retrain": True, "update": "cached"}

#: Rows per chunk file of ``X``, ``Y`` and the masks: a request rewrites only its chunks.
CHUNK_ROWS = 4096

#: The keys of :meth:`Ledger.status` (the public view); nothing else is published.
PUBLIC_KEYS = ("format", "version", "mechanism", "model", "config", "epsilon", "delta", "sigma",
               "dataset", "requests", "removed", "remaining", "budget", "certificate",
               "certificate_status", "trained_utc", "last_utc", "test_accuracy", "test_rmse")

#: The per-row state fields, stored in chunks of :data:`CHUNK_ROWS` rows.
_ROW_FIELDS = ("X", "Y", "mask", "factor_mask")
#: The cached factor's buffers: empty in every stored generation, so never written.
_BUFFER_FILLS = {"rows_buf": "zeros", "h_buf": "zeros", "proj_buf": "zeros", "cap_buf": "eye"}

_ADVICE = ("run `certun verify DIR` and restore the ledger directory from a backup; never "
           "retrain into it")

#: Test seam: called with the name of each step of the write path (see module docstring).
#: Tests set it to raise or to pause the process; ``None`` in normal use.
_FAULT: Callable[[str], None] | None = None

_PRIVATE_DIAGNOSTICS = ("true_residual",)
_MANIFEST_RE = re.compile(r"gen-\d{8}\.json")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


class LedgerError(RuntimeError):
    """The directory is not a (complete, intact) certun ledger."""


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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False,
             **{k: np.require(v, requirements="C") for k, v in arrays.items()})
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.require(arr, requirements="C"), allow_pickle=False)
    return buf.getvalue()


def _is_fill(arr: np.ndarray, fill: str) -> bool:
    if fill == "zeros":
        return not np.any(arr)
    eye = np.eye(arr.shape[-1], dtype=arr.dtype)
    return bool(np.array_equal(arr, np.broadcast_to(eye, arr.shape)))


def _make_fill(fill: str, dtype: str, shape: list[int]) -> np.ndarray:
    if fill == "zeros":
        return np.zeros(shape, np.dtype(dtype))
    eye = np.eye(shape[-1], dtype=np.dtype(dtype))
    return np.ascontiguousarray(np.broadcast_to(eye, tuple(shape)))


@jax.jit
def _zero_removed(A: jax.Array, mask: jax.Array) -> jax.Array:
    """``A`` with the rows of removed rows (``mask == 0``) set to exact zeros."""
    return jnp.where(mask.reshape((-1,) + (1,) * (A.ndim - 1)) > 0, A, jnp.zeros_like(A))


@functools.partial(jax.jit, donate_argnums=(0,))
def _zero_rows_donated(A: jax.Array, rows: jax.Array) -> jax.Array:
    """``A`` with ``rows`` set to exact zeros, in place: ``A`` is donated (``O(m d)``, no copy)."""
    return A.at[rows].set(jnp.zeros((), A.dtype))


def _public_certificate(cert: Certificate) -> dict:
    """``cert.public()`` with its budget reduced to the (configuration-determined) total."""
    pub = cert.public()
    if isinstance(pub.get("budget"), dict):
        pub["budget"] = {k: pub["budget"][k] for k in ("total", "unit") if k in pub["budget"]}
    return _json_safe(pub)


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
    (the current, folded :class:`~certun.unlearners.GuoState`), ``records`` (the journal,
    a list of ``{"public": ..., "private": ..., "prev_sha256": ...}`` dicts) and
    ``generation``.
    """

    def __init__(self, path: Path, config: dict, dataset: dict, state: GuoState,
                 records: list[dict], generation: int, manifest: dict | None,
                 unlearner: Any = None, record_sha: str | None = None):
        self.path = path
        self.config = config
        self.dataset = dataset
        if unlearner is None:
            cfg = dict(config)
            if state.rows_buf is not None and "max_rank" not in cfg:
                # a ledger keeps the buffer width it was made with (the default has changed)
                cfg["max_rank"] = int(state.rows_buf.shape[0])
            unlearner = certified_removal(**cfg)
        self.unlearner = unlearner
        self.state = state
        self.records = records
        self.generation = generation
        self._manifest = manifest  # the committed manifest (chunk entries are reused)
        self._record_sha = record_sha  # SHA-256 of the last record's file
        self._host_rows: dict[str, np.ndarray] = {}  # host copies of the 1-D row fields
        if manifest is not None:
            self._host_rows = {f: np.array(getattr(state, f)) for f in ("mask", "factor_mask")}
        self.last_save_seconds: float | None = None

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(cls, path: str | os.PathLike, X: Any, y: Any, key: jax.Array, *,
               config: dict, num_classes: int | None = None, dataset: dict | None = None,
               public: dict | None = None,
               metrics: Callable[[jax.Array], dict] | None = None) -> Ledger:
        """Train a certified model and write generation 0 of a new ledger at ``path``.

        The ledger is built in a temporary sibling directory and renamed to ``path``
        (an empty directory there is replaced atomically), so nothing is ever written
        into a directory that holds files, and of two concurrent creations one wins.

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
          public: further public facts to keep in the training record (the caller vouches
            that they are public).
          metrics: ``params -> dict`` of public metrics of the trained model on held-out
            data (e.g. test accuracy), kept in the training record's public part.

        Raises:
          ValidationError: if ``path`` holds anything (now or when the ledger is moved
            into place), or for invalid hyperparameters/data.
        """
        p = Path(path)
        _check_new_dir(p)
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
        total = unl_budget(state, cfg)
        public = dict(public or {})
        if metrics is not None:
            public.update(metrics(unl.params(state)))
        d, K = state.W.shape
        ds = dict(dataset or {})
        ds.setdefault("n_train", int(state.X.shape[0]))
        ds.setdefault("d", int(d))
        ds.setdefault("heads", int(K))
        rec = {
            "public": {"record": 0, "kind": "train", "utc": _utc(), "version": __version__,
                       "mechanism": GUO_MECHANISM, "removed_in_request": 0, "removed_total": 0,
                       "n_remaining": int(state.X.shape[0]), "budget": {"total": total},
                       **public},
            "private": {"outcome": "trained", "retrains": 0,
                        "budget": {"total": total, "used": float(state.residual_bound),
                                   "left": total - float(state.residual_bound)},
                        "seconds": {"compute": seconds},
                        "train_grad_norm": float(state.train_grad_norm),
                        "b_norm": float(np.linalg.norm(np.asarray(state.b)))},
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".creating", dir=p.parent))
        try:
            _step("create_tmp")
            atomic_write_bytes(tmp / "LEDGER", _json_bytes(
                {"format": FORMAT, "created_utc": _utc(), "version": __version__}))
            led = cls(tmp, cfg, ds, state, [], -1, None, unlearner=unl)
            with led._lock():
                led._commit(state, rec)
            fsync_dir(tmp)
            _step("create_rename")
            try:
                os.rename(tmp, p)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise _validate.ValidationError(
                        f"out directory {str(p)!r} exists and is not empty (it was filled while "
                        "this ledger was trained); choose a new directory (a ledger is never "
                        "overwritten)") from None
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(p.parent)
        led.path = p
        return led

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True, unlearner: Any = None) -> Ledger:
        """Load the committed generation of the ledger at ``path``.

        Also deletes, when no writer holds the lock, the files a crashed commit left
        behind (never a file the committed generation references).

        Args:
          path: the ledger directory.
          verify: check every file's SHA-256 against the manifest (the manifest's against
            ``CURRENT`` and the journal's hash chain are always checked).
          unlearner: reuse this unlearner (built by ``certified_removal(**ledger.config)``,
            with its compiled functions) instead of building a new one.

        Raises:
          LedgerError: if ``path`` is not a complete certun ledger, or a file is
            missing, corrupt or edited (the message names it).
        """
        p = Path(path)
        man, arrays, records, gen, rec_sha = _read_generation(p, verify)
        try:
            state = _state_from_arrays(arrays, man["special"])
            led = cls(p, man["config"], man["dataset"], state, records, gen, man, unlearner,
                      record_sha=rec_sha)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise LedgerError(f"{p / _manifest_name(gen)}: the state or configuration it "
                              f"describes cannot be rebuilt ({exc}); {_ADVICE}") from None
        led._try_cleanup()
        return led

    # ------------------------------------------------------------------ requests
    def forget(self, indices: Any) -> tuple[dict, UnlearnResult]:
        """Serve one deletion request and commit it durably before returning.

        The rows are gone from the directory (and from ``self.state``) when this returns:
        the state is folded and the rows zeroed before it is written, and the files of the
        previous generation are deleted.

        Args:
          indices: rows of the original training set to remove (one summed Newton step).

        Returns:
          ``(record, result)``: the journal record written and the unlearner's
          :class:`~certun.unlearners.UnlearnResult` (outcome ``"unlearned"`` or
          ``"retrained"``; ``result.state`` is the committed state, ``self.state``).

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
                    "version": __version__, "mechanism": cert.mechanism,
                    "removed_in_request": int(idx.size), "removed_total": removed,
                    "n_remaining": n_total - removed,
                    "budget": {"total": _budget(cert).total},
                    "certificate": _public_certificate(cert),
                },
                "private": {"indices": idx.tolist(), "outcome": res.outcome,
                            "retrains": int(st.retrains),
                            "budget": {"total": _budget(cert).total, "used": _budget(cert).used,
                                       "left": _budget(cert).left},
                            "seconds": {"compute": compute},
                            "certificate": cert.to_dict(private=True),
                            "diagnostics": _json_safe(diag)},
            }
            self._commit(st, rec)
            # the committed (folded, zeroed) state: nothing handed back holds the rows
            return self.records[-1], res._replace(state=self.state)

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
        """The public view (keys :data:`PUBLIC_KEYS` only; see the module docstring).

        Configuration, ``epsilon``/``delta``/``sigma``, counts, the budget total, the last
        certificate's public view, timestamps and held-out test metrics: nothing that
        depends on the training data beyond what the certificate covers.
        """
        last = self.records[-1]["public"]
        first = self.records[0]["public"]
        cert = last.get("certificate")
        out = {
            "format": FORMAT, "version": __version__, "mechanism": GUO_MECHANISM,
            "model": self.config.get("loss", "logistic"),
            "config": {k: self.config[k] for k in CONFIG_KEYS if k in self.config},
            "epsilon": self.config["epsilon"], "delta": self.config["delta"],
            "sigma": self.config["sigma"],
            "dataset": dict(self.dataset),
            "requests": len(self.records) - 1,
            "removed": last["removed_total"], "remaining": last["n_remaining"],
            "budget": {"total": first["budget"]["total"]},
            "certificate": None if cert is None else dict(cert),
            "certificate_status": "none (no removal yet)" if cert is None else cert["status"],
            "trained_utc": first["utc"], "last_utc": last["utc"],
        }
        for k in ("test_accuracy", "test_rmse"):
            if k in first:
                out[k] = first[k]
        return out

    # ------------------------------------------------------------------ storage
    @contextlib.contextmanager
    def _lock(self, blocking: bool = True) -> Iterator[bool]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: no inter-process lock
            yield blocking  # writers go ahead; opportunistic clean-up by readers does not
            return
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _sync(self) -> None:
        """Adopt the committed generation if another process moved it on."""
        cur = _read_current(self.path)[0]
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
        try:
            prep = self._prepare(state, record)
        except BaseException:
            if (self.path / "CURRENT").exists():
                self._reload()  # donated X/Y may be gone: agree with the disk (before it)
            raise
        self._write(prep)
        self.last_save_seconds = time.perf_counter() - t0

    def _sanitise(self, state: GuoState, rows: np.ndarray | None = None) -> GuoState:
        """The state to store: buffers folded, aggregates downdated, removed rows zeroed.

        ``rows``: the request's rows. The state is then the ledger's own (its ``X`` and ``Y``
        are those of the committed state, whose removed rows are already zero), so those rows
        are zeroed in place: ``X`` and ``Y`` are donated (``O(m d)``, no copy of ``X``), and a
        state handed out before this request (``ledger.state``, a result's state) holds deleted
        ``X``/``Y`` afterwards: use ``ledger.state`` or the returned result's state.
        """
        if state.rows_buf is not None:
            if state.buf_count is not None and int(state.buf_count) > 0:
                state = self.unlearner.fold(state)
        elif not np.array_equal(np.asarray(state.factor_mask), np.asarray(state.mask)):
            # update="pcg": the curvature is downdated by re-factorising on the present rows
            state = self.unlearner.refresh(state)
        if rows is not None and state.X is self.state.X and state.Y is self.state.Y:
            r = jnp.asarray(np.asarray(rows, np.int32))
            return state._replace(X=_zero_rows_donated(state.X, r),
                                  Y=_zero_rows_donated(state.Y, r))
        return state._replace(X=_zero_removed(state.X, state.mask),
                              Y=_zero_removed(state.Y, state.mask))

    def _prepare(self, state: GuoState, record: dict) -> dict:
        """Everything :meth:`_write` needs, as host data (the only step that touches JAX)."""
        g = self.generation + 1
        raw_X, raw_Y = state.X, state.Y
        owned = raw_X is self.state.X and raw_Y is self.state.Y
        state = self._sanitise(state, record["private"].get("indices"))
        fields, special = _state_fields(state)
        prev = None if self._manifest is None else self._manifest["arrays"]
        n = int(state.X.shape[0])
        # a ledger keeps the chunk size it was created with
        C = CHUNK_ROWS if self._manifest is None else int(self._manifest["chunk_rows"])
        n_chunks = max(1, -(-n // C))
        host_rows = {f: np.array(fields[f]) for f in ("mask", "factor_mask")}
        # rows whose mask changed: the only rows X and Y can have changed in (zeroed), as long
        # as they are the arrays of the committed state
        moved = (None if prev is None else
                 np.flatnonzero(host_rows["mask"] != self._host_rows.get("mask")))
        entries, files, bundle_arrays = {}, {}, {}
        bundle = f"arrays/{g:08d}.npz"
        for name, obj in fields.items():
            if name in _ROW_FIELDS:
                # only the chunks written are copied to the host (a request touches O(C d)
                # bytes of X, not the whole array)
                arr = host_rows[name] if name in host_rows else obj
                if prev is None or name not in prev or "chunks" not in prev[name]:
                    changed = set(range(n_chunks))
                elif name in host_rows:
                    old = self._host_rows[name]
                    changed = {c for c in range(n_chunks)
                               if not np.array_equal(arr[c * C:(c + 1) * C],
                                                     old[c * C:(c + 1) * C])}
                elif owned:
                    assert moved is not None  # prev is not None here
                    changed = set((moved // C).tolist())
                else:
                    changed = set(range(n_chunks))
                chunks = []
                for c in range(n_chunks):
                    if c in changed:
                        data = _npy_bytes(np.asarray(arr[c * C:(c + 1) * C]))
                        fname = f"rows/{name}-{c:06d}-{g:08d}.npy"
                        files[fname] = data
                        chunks.append(fname)
                    else:
                        assert prev is not None  # only a previous manifest has chunks to reuse
                        chunks.append(prev[name]["chunks"][c])
                entries[name] = {"chunks": chunks, "dtype": np.dtype(arr.dtype).str,
                                 "shape": list(arr.shape)}
                continue
            arr = np.asarray(obj)
            fill = _BUFFER_FILLS.get(name)
            if fill is not None and not _is_fill(arr, fill):
                raise AssertionError(f"ledger: the state's {name} is not empty after folding")
            if fill is not None:
                entries[name] = {"fill": fill, "dtype": arr.dtype.str, "shape": list(arr.shape)}
            else:
                bundle_arrays[name] = arr
                entries[name] = {"file": bundle, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        files[bundle] = _npz_bytes(bundle_arrays)
        hashes = {f: _sha(b) for f, b in files.items()}
        if prev is not None:  # unchanged chunks keep the hashes the committed manifest holds
            for e in entries.values():
                for f in e.get("chunks", ()):
                    if f not in hashes:
                        assert self._manifest is not None
                        hashes[f] = self._manifest["files"][f]
        record = _json_safe(dict(record, prev_sha256=self._record_sha))
        rec_bytes = _json_bytes(record)
        rec_file = f"records/{g:08d}.json"
        manifest = {"format": FORMAT, "generation": g, "n_records": g + 1,
                    "version": __version__, "utc": _utc(), "config": self.config,
                    "dataset": self.dataset, "chunk_rows": C, "arrays": entries,
                    "special": special, "files": dict(sorted(hashes.items())),
                    "record": {"file": rec_file, "sha256": _sha(rec_bytes)},
                    "public": record["public"]}
        manifest = _json_safe(manifest)
        man_bytes = _json_bytes(manifest)
        return {"g": g, "state": state, "record": record, "files": files,
                "record_file": rec_file, "record_bytes": rec_bytes, "manifest": manifest,
                "manifest_bytes": man_bytes, "host_rows": host_rows}

    def _write(self, prep: dict) -> None:
        """The write path (file I/O only): arrays, record, manifest, then ``CURRENT``."""
        g = prep["g"]
        try:
            _step("bundle")
            for fname in sorted(prep["files"]):
                atomic_write_bytes(self.path / fname, prep["files"][fname])
            _step("arrays_written")
            atomic_write_bytes(self.path / prep["record_file"], prep["record_bytes"])
            _step("record_written")
            atomic_write_bytes(self.path / _manifest_name(g), prep["manifest_bytes"])
            _step("manifest_written")
            atomic_write_bytes(self.path / "CURRENT", (
                f"{_manifest_name(g)} {_sha(prep['manifest_bytes'])}\n").encode())
            _step("committed")
        except BaseException:
            # whatever happened, agree with the disk: before or after this request
            if (self.path / "CURRENT").exists():
                self._reload()
                self._cleanup()
            raise
        self.state, self.generation = prep["state"], g
        self.records = self.records + [prep["record"]]
        self._manifest = prep["manifest"]
        self._record_sha = prep["manifest"]["record"]["sha256"]
        self._host_rows = prep["host_rows"]
        self._cleanup()

    def _try_cleanup(self) -> None:
        """Clean up if no writer holds the lock and the directory is writable (best effort)."""
        if not os.access(self.path, os.W_OK):
            return
        try:
            with self._lock(blocking=False) as got:
                if got and _read_current(self.path)[0] == _manifest_name(self.generation):
                    self._cleanup(step="open_cleanup")
        except OSError:
            pass

    def _cleanup(self, step: str = "cleanup") -> None:
        """Delete every file the committed manifest does not reference (under the lock)."""
        try:
            _step(step)
            for f in _unreferenced(self.path, self._manifest, self.generation):
                if f.is_file() or f.is_symlink():
                    f.unlink(missing_ok=True)
            for sub in ("", "arrays", "rows", "records"):
                fsync_dir(self.path / sub)
        except Exception:  # noqa: BLE001 - clean-up never undoes a commit; open() retries it
            pass


def unl_budget(state: GuoState, cfg: dict) -> float:
    """The removal budget ``sigma epsilon / c`` of a configuration."""
    from certun.accounting.gaussian import guo_budget

    return float(guo_budget(cfg["sigma"], cfg["epsilon"], cfg["delta"]))


def _check_new_dir(p: Path) -> None:
    if p.is_symlink() or (p.exists() and (not p.is_dir() or any(p.iterdir()))):
        raise _validate.ValidationError(
            f"out directory {str(p)!r} exists and is not empty; choose a new directory "
            "(a ledger is never overwritten, and nothing is written into a directory that "
            "holds files)")


def _manifest_name(g: int) -> str:
    return f"gen-{g:08d}.json"


def _unreferenced(p: Path, manifest: dict | None, g: int) -> list[Path]:
    """The ledger's entries that the committed generation ``g`` does not use.

    Everything in ``arrays/``, ``rows/`` and ``records/`` that the manifest does not
    reference, and old manifests and temporaries in the directory itself (other files
    there are left alone).
    """
    keep = set() if manifest is None else set(manifest["files"])
    keep |= {f"records/{j:08d}.json" for j in range(g + 1)}
    out = []
    for f in p.iterdir():
        if (f.name.startswith("gen-") and f.name != _manifest_name(g)) or (
                f.name.startswith(".") and f.name.endswith(".tmp")):
            out.append(f)
    for sub in ("arrays", "rows", "records"):
        d = p / sub
        if d.is_dir():
            out += [f for f in d.iterdir() if f"{sub}/{f.name}" not in keep]
    return out


def _fail(p: Path, rel: str, what: str) -> LedgerError:
    return LedgerError(f"{p / rel}: {what}; {_ADVICE}")


def _read_current(p: Path) -> tuple[str, str]:
    try:
        text = (p / "CURRENT").read_text()
    except FileNotFoundError:
        if (p / "LEDGER").exists():
            raise _fail(p, "CURRENT", "missing (the ledger is damaged)") from None
        raise LedgerError(f"{str(p)!r} is not a certun ledger (no CURRENT file); give the "
                          "directory `certun train --out` created") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(p, "CURRENT", f"unreadable ({exc})") from None
    parts = text.split()
    if len(parts) != 2 or not _MANIFEST_RE.fullmatch(parts[0]) or not _SHA_RE.fullmatch(parts[1]):
        raise _fail(p, "CURRENT", "corrupt (expected 'gen-NNNNNNNN.json <sha256>')")
    return parts[0], parts[1]


def _read_generation(p: Path, verify: bool, attempts: int = 3):
    """Load the generation ``CURRENT`` names (retrying if a concurrent commit moved it on)."""
    for attempt in range(attempts):
        name = _read_current(p)[0] if p.is_dir() else None
        try:
            return _read_generation_once(p, verify)
        except LedgerError:
            if attempt + 1 == attempts or name is None or _read_current(p)[0] == name:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _read_file(p: Path, rel: str, sha: str | None) -> bytes:
    try:
        data = (p / rel).read_bytes()
    except FileNotFoundError:
        raise _fail(p, rel, "missing") from None
    except OSError as exc:
        raise _fail(p, rel, f"unreadable ({exc.strerror or exc})") from None
    if sha is not None and _sha(data) != sha:
        raise _fail(p, rel, "checksum mismatch (the file is corrupt or was edited)")
    return data


def _expect(cond: bool, p: Path, rel: str, what: str) -> None:
    if not cond:
        raise _fail(p, rel, what)


def _read_generation_once(p: Path, verify: bool):
    if not p.is_dir():
        raise LedgerError(f"{str(p)!r} is not a directory; give the ledger directory")
    try:
        marker = json.loads((p / "LEDGER").read_text())
    except FileNotFoundError:
        raise LedgerError(f"{str(p)!r} is not a certun ledger (no LEDGER marker)") from None
    except (OSError, ValueError) as exc:
        raise _fail(p, "LEDGER", f"corrupt ({exc})") from None
    fmt = marker.get("format") if isinstance(marker, dict) else None
    if fmt == "certun.ledger/1":
        raise LedgerError(
            f"{p / 'LEDGER'}: format certun.ledger/1 (an earlier certun) keeps removed rows on "
            "disk and is no longer read; create a new ledger in a new directory and delete this "
            "one securely")
    if fmt != FORMAT:
        raise _fail(p, "LEDGER", f"unsupported ledger format {fmt!r}; expected {FORMAT!r}")
    name, man_sha = _read_current(p)
    man_bytes = _read_file(p, name, man_sha)
    try:
        man = json.loads(man_bytes)
    except ValueError as exc:
        raise _fail(p, name, f"not valid JSON ({exc})") from None
    rel = name
    try:
        _expect(isinstance(man, dict) and man.get("format") == FORMAT, p, name,
                "not a manifest of this format")
        gen = man["generation"]
        _expect(isinstance(gen, int) and name == _manifest_name(gen), p, name,
                "its generation does not match its name")
        for key, typ in (("config", dict), ("dataset", dict), ("arrays", dict), ("special", dict),
                         ("files", dict), ("record", dict), ("public", dict), ("chunk_rows", int)):
            _expect(isinstance(man.get(key), typ), p, name, f"key {key!r} missing or not a "
                    f"{typ.__name__}")
        blobs = {}
        for rel in sorted(man["files"]):
            sha = man["files"][rel]
            _expect(isinstance(sha, str) and _SHA_RE.fullmatch(sha) is not None
                    and re.fullmatch(r"(arrays|rows)/[\w.-]+", rel) is not None, p, name,
                    f"bad file entry {rel!r}")
            blobs[rel] = _read_file(p, rel, sha if verify else None)
        rel = name
        arrays, bundles = {}, {}
        for field, info in man["arrays"].items():
            shape, dtype = tuple(info["shape"]), info["dtype"]
            if "fill" in info:
                arr = _make_fill(info["fill"], dtype, list(shape))
            elif "chunks" in info:
                parts = []
                for rel in info["chunks"]:
                    _expect(rel in blobs, p, name, f"chunk {rel!r} has no checksum")
                    parts.append(np.load(io.BytesIO(blobs[rel]), allow_pickle=False))
                rel = name
                arr = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
            else:
                rel = info["file"]
                _expect(rel in blobs, p, name, f"file {rel!r} has no checksum")
                if rel not in bundles:
                    bundles[rel] = np.load(io.BytesIO(blobs[rel]), allow_pickle=False)
                arr = bundles[rel][field]
                rel = name
            _expect(arr.dtype.str == dtype and arr.shape == shape, p, name,
                    f"array {field!r} does not match the manifest (dtype, shape)")
            arrays[field] = arr
        rel = name
        missing = [f for f in GuoState._fields if f not in man["arrays"]
                   and man["special"].get(f, 0) is not None]
        _expect(not missing, p, name, f"state fields {missing} missing")
        records, prev_sha, rec_sha = [], None, None
        for j in range(gen + 1):
            rel = f"records/{j:08d}.json"
            data = _read_file(p, rel, None)
            rec = json.loads(data)
            _expect(isinstance(rec, dict) and isinstance(rec.get("public"), dict)
                    and isinstance(rec.get("private"), dict), p, rel, "not a journal record")
            _expect(rec.get("prev_sha256") == prev_sha, p, rel if j == 0 else
                    f"records/{j - 1:08d}.json and {rel}", "the journal's hash chain breaks "
                    "here (one of them is corrupt or was edited)")
            _expect(rec["public"].get("record") == j, p, rel, f"not numbered {j}")
            prev_sha = rec_sha = _sha(data)
            records.append(rec)
        rel = man["record"]["file"]
        _expect(rel == f"records/{gen:08d}.json" and man["record"]["sha256"] == rec_sha, p, rel,
                "checksum mismatch with the manifest (the journal is corrupt or was edited)")
        _expect(records[-1]["public"] == man["public"], p, name,
                f"does not match journal record {gen}")
    except LedgerError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, EOFError,
            OSError) as exc:
        raise _fail(p, rel, f"malformed ({type(exc).__name__}: {exc})") from None
    return man, arrays, records, gen, rec_sha


# ----------------------------------------------------------------------------- verify


def verify(path: str | os.PathLike) -> dict:
    """Check a ledger: every checksum, and the journal replayed against the state.

    Holds the writers' lock (a running commit finishes first) and deletes files a crash
    left behind, then checks: every file's SHA-256, the manifest's against ``CURRENT``,
    the journal's hash chain; that the present-row mask is the complement of the union
    of the journal's removed indices (each removed once), that ``n_removed``, the request
    counter, the retrain counter and every record's counts agree with the journal, that
    every removed row of ``X`` and ``Y`` is zero, that the stored state is folded
    (empty buffers) and that no unreferenced file remains.

    Args:
      path: the ledger directory.

    Returns:
      ``{"ok": bool, "ledger": path, "generation": g or None, "problems": [one line each],
      "checked": {"files": ..., "records": ..., "rows": ...}}``.
    """
    p = Path(path)
    out: dict[str, Any] = {"ok": False, "ledger": str(p), "generation": None, "problems": [],
                           "checked": {}}
    probs = out["problems"]
    if not (p / "LEDGER").exists() and not (p / "CURRENT").exists():
        probs.append(f"{str(p)!r} is not a certun ledger (no LEDGER or CURRENT file)")
        return out
    writable = os.access(p, os.W_OK)  # a read-only copy (a backup) is checked as it is
    try:
        with (Ledger._lock(cast(Ledger, _LockOnly(p))) if writable
              else contextlib.nullcontext()):
            led = Ledger.open(p, verify=True)
            if writable:
                led._cleanup()
            out["generation"] = led.generation
            _replay(led, probs)
            left = _unreferenced(p, led._manifest, led.generation)
            probs += [f"{f}: not part of the committed generation (could not be deleted)"
                      for f in left]
            assert led._manifest is not None  # an opened ledger has its manifest
            out["checked"] = {"files": len(led._manifest["files"]) + len(led.records) + 2,
                              "records": len(led.records), "rows": int(led.state.X.shape[0])}
    except LedgerError as exc:
        probs.append(str(exc))
    except OSError as exc:
        probs.append(f"{p}: {exc.strerror or exc}")
    out["ok"] = not probs
    return out


def _budget(cert: Any) -> Any:
    """A certified-removal certificate's budget (always present)."""
    assert cert.budget is not None
    return cert.budget


class _LockOnly:
    """Just enough of a :class:`Ledger` for :meth:`Ledger._lock`."""

    def __init__(self, path: Path):
        self.path = path


def _replay(led: Ledger, probs: list[str]) -> None:
    st = led.state
    n = int(st.X.shape[0])
    removed: list[int] = []
    retrains = 0
    for j, rec in enumerate(led.records[1:], start=1):
        where = led.path / "records" / f"{j:08d}.json"
        idx = rec["private"].get("indices")
        if not (isinstance(idx, list) and idx and all(isinstance(i, int) for i in idx)):
            probs.append(f"{where}: no list of removed indices")
            continue
        removed += idx
        retrains += rec["private"].get("outcome") == "retrained"
        pub = rec["public"]
        if (pub.get("removed_total") != len(removed) or pub.get("n_remaining") != n - len(removed)
                or pub.get("removed_in_request") != len(idx)):
            probs.append(f"{where}: its counts do not match the journal before it")
    ids = np.asarray(removed, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n or np.unique(ids).size != ids.size):
        probs.append(f"{led.path}: the journal removes an index twice or out of range")
        return
    mask = np.asarray(st.mask)
    expect = np.ones(n, mask.dtype)
    expect[ids] = 0
    man = led.path / _manifest_name(led.generation)
    if not np.array_equal(mask, expect):
        probs.append(f"{man}: the mask of present rows is not the complement of the journal's "
                     f"{ids.size} removed indices")
    if int(st.n_removed) != ids.size or int(st.requests) != led.generation:
        probs.append(f"{man}: n_removed {int(st.n_removed)} / requests {int(st.requests)} do not "
                     f"match the journal ({ids.size} removed in {led.generation} requests)")
    if int(st.retrains) != retrains:
        probs.append(f"{man}: retrains {int(st.retrains)} do not match the journal ({retrains})")
    if ids.size and (np.any(np.asarray(st.X)[ids]) or np.any(np.asarray(st.Y)[ids])):
        probs.append(f"{man}: a removed row of X or Y is not zero")
    if not np.array_equal(np.asarray(st.factor_mask), mask) or (
            st.buf_count is not None and int(st.buf_count) != 0):
        probs.append(f"{man}: the stored state is not folded (its factor includes removed rows)")
