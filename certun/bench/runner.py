r"""The benchmark run: ensembles, oracles, metrics, ranks.

For every method on a task and a forget set ``F`` (``m`` rows), with ``N`` seeds:

* **unlearned ensemble**: ``N`` models trained on ``D`` with the method's own randomness
  (seed ``i``) and then unlearning ``F`` in one request;
* **oracle ensemble**: ``2N`` models of the same learning algorithm trained on ``D \\ F``
  (independent seeds), cached on disk (:mod:`certun.bench.cache`); the first ``N`` are the
  oracle, the other ``N`` an independent oracle whose distance to the first is the null
  level of KLoM and U-LiRA at this ``N`` (KLoM is a biased plug-in statistic; a number alone
  means little).

The oracle of a method is *its own* learning algorithm retrained without ``F`` -- the
distribution its certificate compares with (for Guo et al. a fresh ``b``; for an output-
perturbation mechanism its noise; for a deterministic method the one retrained model).

Metrics (each defined in :mod:`certun.audits`, see :data:`METRICS`): accuracy on the test,
retained and forgotten rows; distance to retraining under the coupling of the method
(:mod:`certun.bench.methods`), parameters and predictions; KLoM per split against the
oracle; the two-version membership-inference AUC of Chen et al. (shadow seeds train the
attack, target seeds test it; members are the forgotten rows, non-members as many held-out
rows); U-LiRA against the oracle; the certified ``(epsilon, delta)`` of the request and an
empirical lower bound on epsilon (binary tasks): the adversarial audit of every certified
mechanism with audit worlds, 0 for exact unlearning, the never-erring test's
Clopper-Pearson bound for a deterministic method that differs from retraining (see
:func:`_audit`); seconds and gradient evaluations of one request relative to exact
retraining in the same run. Every ensemble number carries a ``1 - alpha`` interval.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import scipy.special

from certun import _validate
from certun.audits import distance, lira, mia, utility
from certun.audits import stats as audit_stats
from certun.bench import methods as _methods
from certun.bench.cache import Cache, config_hash
from certun.bench.forget import ForgetSpec, select_forget
from certun.bench.tasks import Task, load_task
from certun.progress import progress_bar

__all__ = ["BenchConfig", "Metric", "METRICS", "run", "rank"]


class BenchConfig(NamedTuple):
    """What a benchmark run does.

    Attributes:
      task: the task name (:func:`certun.bench.tasks.load_task`).
      methods: method names or ``module:function`` specs.
      forget: the forget set (:class:`~certun.bench.forget.ForgetSpec`).
      ensemble: ``N``, models per ensemble (``>= 8``; the oracle has ``2N``).
      seed: the base seed of every model (model ``i`` folds in ``i``).
      retain_eval: retained rows on which KLoM is evaluated (a seeded subsample).
      val_eval: held-out rows on which KLoM is evaluated (the first ones of the test set).
      audit_runs: runs per world of the adversarial epsilon audits whose runs are draws of
        Gaussian noise around public centres (0: no audit).
      audit_training_runs: runs per world of the audits whose every run is a training or
        fine-tuning run (Guo et al.'s, Langevin's, noisy fine-tuning's; 0: none of them).
      attack: the two-version attack's classifier: ``"rf"`` (random forest, Chen et al.'s
        default), ``"dt"`` or ``"lr"`` (:func:`certun.audits.mia.chen_attack`).
      audit_training: give the training audits ``audit_runs`` runs too (a tighter bound;
        minutes).
      alpha: miss probability of every interval.
      lam: override the task's regularisation.
    """

    task: str = "digits_3v8"
    methods: tuple = _methods.DEFAULT_METHODS
    forget: ForgetSpec = ForgetSpec()
    ensemble: int = 16
    seed: int = 0
    retain_eval: int = 200
    val_eval: int = 200
    audit_runs: int = 2000
    audit_training_runs: int = 200
    audit_training: bool = False
    attack: str = "rf"
    alpha: float = 0.05
    lam: float | None = None

    def describe(self) -> dict:
        """JSON-ready form."""
        d = self._asdict()
        d["methods"] = list(self.methods)
        d["forget"] = self.forget.describe()
        return d


class Metric(NamedTuple):
    """A leaderboard column.

    Attributes:
      key: the JSON key.
      label: the column header.
      better: ``"lower"``, ``"higher"`` or ``"half"`` (closest to 0.5) or ``"oracle"``
        (closest to the oracle ensemble's value).
      definition: where it is defined (module and paper).
    """

    key: str
    label: str
    better: str
    definition: str


#: The leaderboard's metrics, in column order.
METRICS = (
    Metric("test_accuracy", "test acc", "higher",
           "certun.audits.utility.accuracy (TA, Jia et al. 2023); regression: -RMSE"),
    Metric("retain_accuracy", "retain acc", "higher",
           "certun.audits.utility.accuracy on the retained rows (RA, Jia et al. 2023)"),
    Metric("forget_accuracy", "forget acc", "oracle",
           "certun.audits.utility.accuracy on the forgotten rows (1 - UA, Jia et al. 2023); "
           "ranked by closeness to the oracle's"),
    Metric("param_distance", "param dist", "lower",
           "certun.audits.distance.parameter_distance to retraining under the coupling"),
    Metric("prediction_distance", "pred dist", "lower",
           "1 - certun.audits.distance.prediction_agreement on the test rows under the "
           "coupling (regression: RMS difference)"),
    Metric("klom_forget", "KLoM forget", "lower",
           "certun.audits.distance.klom, 95th percentile, forget split (Georgiev et al. 2024)"),
    Metric("klom_retain", "KLoM retain", "lower", "as above, retain split"),
    Metric("klom_val", "KLoM val", "lower", "as above, validation (held-out) split"),
    Metric("mia_auc", "2-version AUC", "half",
           "certun.audits.mia.chen_attack, sorted_diff feature (Chen et al., CCS 2021)"),
    Metric("ulira_auc", "U-LiRA AUC", "half",
           "certun.audits.lira.ulira_audit (Hayes et al. 2024)"),
    Metric("epsilon_certified", "cert. eps", "lower",
           "the request's certificate (inf: none; 0: exact unlearning)"),
    Metric("epsilon_lower", "emp. eps LB", "lower",
           "certun.audits.adversary.adversarial_audit (Clopper-Pearson; Jagielski et al. 2020)"),
    Metric("seconds_relative", "time / retrain", "lower",
           "certun.audits.utility.relative_cost of one request's seconds (RTE, Jia et al. 2023)"),
    Metric("grad_evals_relative", "grads / retrain", "lower",
           "certun.audits.utility.relative_cost of per-example gradient and Hessian-row "
           "evaluations"),
)


def _iv(x: utility.Interval | tuple | float, n: int | None = None) -> dict:
    if isinstance(x, utility.Interval):
        return {"value": x.value, "lower": x.lower, "upper": x.upper, "n": x.n}
    if isinstance(x, tuple):
        return {"value": x[0], "lower": x[1], "upper": x[2], "n": n}
    return {"value": float(x), "lower": None, "upper": None, "n": n}


def _nan() -> dict:
    return {"value": float("nan"), "lower": None, "upper": None, "n": 0}


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


class _Eval(NamedTuple):
    X: np.ndarray          # rows evaluated (forget, retain sample, validation)
    y: np.ndarray          # their task labels
    splits: dict           # name -> column indices into X


def _outputs(task: Task, model: _methods.Model, params: Any, X: Any) -> np.ndarray:
    """The model's logits on ``X`` (classification) or its ``(P,)`` predictions (regression)."""
    z = np.asarray(model.logits(params, X), np.float64)
    if task.kind == "regression" and z.ndim == 2:
        z = z[:, -1]  # a linear model's (0, x.w) form: the prediction is the last column
    return z


def _statistic(task: Task, logits: Any, y: np.ndarray) -> np.ndarray:
    """KLoM's and U-LiRA's statistic: :func:`certun.audits.distance.margins` (host NumPy).

    Regression: minus the absolute error.
    """
    z = np.asarray(logits, np.float64)
    if task.kind == "regression":
        return -np.abs(z.reshape(-1) - np.asarray(y, np.float64))
    ids = (np.asarray(y) > 0).astype(np.int64) if task.kind == "binary" else np.asarray(
        y, np.int64)
    zc = np.take_along_axis(z, ids[:, None], axis=1)[:, 0]
    others = np.where(np.arange(z.shape[1])[None, :] == ids[:, None], -np.inf, z)
    return zc - scipy.special.logsumexp(others, axis=1)


def _tree_np(p: Any) -> Any:
    def leaf(a: Any) -> np.ndarray:
        a = np.asarray(a, np.float64)
        return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a  # one head: (d, 1) -> (d,)
    return jax.tree_util.tree_map(leaf, p)


def _prediction_distance(task: Task, model: _methods.Model, a: Any, b: Any) -> float:
    za = np.asarray(_outputs(task, model, a, task.X_test), np.float64)
    zb = np.asarray(_outputs(task, model, b, task.X_test), np.float64)
    if task.kind == "regression":
        return float(np.sqrt(np.mean((za.reshape(-1) - zb.reshape(-1)) ** 2)))
    return 1.0 - distance.prediction_agreement(np.argmax(za, 1), np.argmax(zb, 1))


def _accuracy(task: Task, logits: Any, y: np.ndarray) -> float:
    z = np.asarray(logits, np.float64)
    if task.kind == "regression":
        return utility.neg_rmse(z.reshape(-1), y)
    return utility.accuracy(z, y)


def _oracle(task: Task, model: _methods.Model, method: str, ev: _Eval, keep: np.ndarray,
            cfg: BenchConfig, cache: Cache, base: dict) -> dict[str, np.ndarray]:
    """The ``2N`` oracle models' statistics on the evaluated rows (cached)."""
    config = ({**base, "what": "oracle", **model.oracle_key} if model.oracle_key is not None
              else {**base, "what": "oracle", "method": method,
                    "hyperparameters": model.hyperparameters})

    def build() -> dict[str, np.ndarray]:
        u = model.unlearner
        Xr, yr = task.X_train[keep], model.labels(task.y_train[keep])
        stats, accs, secs = [], [], []
        with progress_bar(2 * cfg.ensemble, f"{method}: oracle") as bar:
            for i in range(2 * cfg.ensemble):
                t0 = time.perf_counter()
                k = jax.random.fold_in(jax.random.key(cfg.seed + 1), i)
                p = (model.oracle(Xr, yr, k) if model.oracle is not None
                     else u.params(u.init(Xr, yr, k, **model.init_kwargs)))
                secs.append(time.perf_counter() - t0)
                stats.append(_statistic(task, _outputs(task, model, p, ev.X), ev.y))
                accs.append(_accuracy(task, _outputs(task, model, p, task.X_test), task.y_test))
                bar.advance(1)
        return {"stat": np.stack(stats), "test_accuracy": np.asarray(accs),
                "seconds": np.asarray(secs)}

    return cache.get_or_build("oracle", config, build)


def _no_audit(reason: str, value: float = float("nan")) -> dict:
    return {"value": value, "lower": None, "upper": None, "n": 0, "reason": reason}


def _audit(model: _methods.Model, method: str, task: Task, F: np.ndarray, cfg: BenchConfig,
           cache: Cache, base: dict, ens: dict) -> dict:
    """The empirical lower bound on epsilon of the method's request (or why there is none).

    * a certified mechanism with audit worlds (:attr:`certun.bench.Model.audit`):
      :func:`certun.audits.adversary.adversarial_audit`, ``audit_runs`` runs per world
      (``audit_training_runs`` when every run is a training run);
    * exact unlearning: 0 (the output has the oracle's distribution; nothing to bound);
    * a deterministic method (``Model.deterministic``) whose unlearned model differs from
      retraining (coupled parameter distance ``> 0`` for every seed): the two worlds' outputs
      are two points, the test "output equals the unlearned model" has ``TP = n``, ``FP = 0``
      and the bound is the Clopper-Pearson one at ``audit_runs`` runs per world (it grows with
      the runs: the true epsilon is infinite).
    """
    from certun.audits.stats import epsilon_from_scores

    if task.kind != "binary":
        return _no_audit("the audits' worlds are binary classifiers")
    family = _family(method)
    if model.audit is not None:
        runs = cfg.audit_runs if (not model.audit_trains or cfg.audit_training) \
            else cfg.audit_training_runs
        if runs <= 0:
            return _no_audit("audit turned off (--audit-runs / --audit-training-runs 0)")
        config = {**base, "what": "audit", "method": method, "runs": runs,
                  "hyperparameters": model.hyperparameters}
        audit = model.audit

        def build() -> dict[str, np.ndarray]:
            from certun.audits.adversary import adversarial_audit

            w = audit(F)
            a = adversarial_audit(w, key=jax.random.key(cfg.seed + 7), num_runs=runs,
                                  alpha=cfg.alpha, fit_runs=max(runs // 4, 20),
                                  batch_size=min(runs, 8192), raise_on_violation=False)
            return {"epsilon_lower": np.asarray(a.epsilon_lower),
                    "epsilon_claimed": np.asarray(a.epsilon_claimed),
                    "runs": np.asarray(a.runs_per_world),
                    "statistic": np.asarray(a.best_statistic)}

        try:
            got = cache.get_or_build("audit", config, build)
        except RuntimeError as exc:  # e.g. the mechanism refused the audit's request
            return _no_audit(f"the audit worlds could not be built ({exc})")
        return {"value": float(got["epsilon_lower"]), "lower": None, "upper": None,
                "n": int(got["runs"]), "audit": "adversarial (Gaussian worlds)"
                if not model.audit_trains else "adversarial (training runs)"}
    if family == "exact":
        return _no_audit("exact unlearning: the output has retraining's distribution", 0.0)
    if model.deterministic and cfg.audit_runs > 0:
        d = ens["param_distance"]
        if d.size and bool(np.all(d > 0)):
            n = cfg.audit_runs
            tb = epsilon_from_scores(np.ones(n), np.zeros(n), alpha=cfg.alpha, delta=1e-5,
                                     threshold=0.5)
            return {"value": float(tb.bound.epsilon), "lower": None, "upper": None, "n": n,
                    "audit": "deterministic: the unlearned and retrained models differ"}
    if family in ("uncertified", "baseline"):
        return _no_audit("no audit: not deterministic and no audit worlds")
    return _no_audit("no audit worlds for this method (give Model.audit)")


def _certified(res: Any, family: str) -> tuple[float, float, str]:
    cert = getattr(res, "certificate", None)
    if cert is None:
        return (0.0, 0.0, "exact") if family == "exact" else (math.inf, 1.0, "none")
    status = str(getattr(cert, "status", "holds"))
    if status == "fails":
        return math.inf, 1.0, status
    return float(cert.epsilon), float(cert.delta), status


def _ensemble(task: Task, model: _methods.Model, method: str, F: np.ndarray, keep: np.ndarray,
              ev: _Eval, cfg: BenchConfig, cache: Cache, base: dict) -> dict[str, np.ndarray]:
    """The ``N`` trained-then-unlearned models: statistics, accuracies, distances, costs.

    Cached like the oracle (they are the shadow models of U-LiRA and of the two-version
    attack); the seconds are those measured when the entry was built.
    """
    config = {**base, "what": "unlearned", "method": method,
              "hyperparameters": model.hyperparameters}

    def build() -> dict[str, np.ndarray]:
        u, N, m, n = model.unlearner, cfg.ensemble, int(F.size), task.n_train
        y_lab = model.labels(task.y_train)
        rng = np.random.default_rng(cfg.seed)
        stats, dist_p, dist_y, accs, secs, grads, outcomes = [], [], [], [], [], [], {}
        lo_rows, lu_rows = [], []
        eps, dlt, status = -1.0, 0.0, "none"
        with progress_bar(N, f"{method}: unlearn") as bar:
            for i in range(N):
                st = u.init(task.X_train, y_lab, jax.random.fold_in(jax.random.key(cfg.seed), i),
                            **model.init_kwargs)
                p0 = u.params(st)
                if i == 0:  # compile the request path on a throw-away call (pure functions)
                    u.unlearn(st, F)
                t0 = time.perf_counter()
                res = u.unlearn(st, F)
                pu = getattr(res, "params", res)
                if pu is not None:
                    jax.block_until_ready(pu)
                dt = time.perf_counter() - t0
                outcome = str(getattr(res, "outcome", "unlearned"))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                bar.advance(1)
                if pu is None:
                    continue
                secs.append(dt)
                e, dl, s = _certified(res, _family(method))
                if e > eps:
                    eps, dlt, status = e, dl, s
                stats.append(_statistic(task, _outputs(task, model, pu, ev.X), ev.y))
                accs.append([_accuracy(task, _outputs(task, model, pu, task.X_test), task.y_test),
                             _accuracy(task, _outputs(task, model, pu, task.X_train[keep]),
                                       task.y_train[keep]),
                             _accuracy(task, _outputs(task, model, pu, task.X_train[F]),
                                       task.y_train[F])])
                if model.coupled is not None:
                    a, b = (_tree_np(t) for t in model.coupled(u, res))
                    dist_p.append(distance.parameter_distance(a, b))
                    dist_y.append(_prediction_distance(task, model, a, b))
                if model.grad_evals is not None:
                    grads.append(float(model.grad_evals(res, n, m)))
                if task.kind != "regression":
                    neg = rng.choice(task.X_test.shape[0], size=m,
                                     replace=task.X_test.shape[0] < m)
                    q = np.concatenate([task.X_train[F], task.X_test[neg]])
                    lo_rows.append(np.asarray(_outputs(task, model, p0, q), np.float64))
                    lu_rows.append(np.asarray(_outputs(task, model, pu, q), np.float64))
        P = ev.X.shape[0]
        return {"stat": np.asarray(stats, np.float64).reshape(-1, P),
                "accuracy": np.asarray(accs, np.float64).reshape(-1, 3),
                "param_distance": np.asarray(dist_p, np.float64),
                "prediction_distance": np.asarray(dist_y, np.float64),
                "seconds": np.asarray(secs, np.float64),
                "grad_evals": np.asarray(grads, np.float64),
                "mia_original": _stack(lo_rows, 2 * m), "mia_unlearned": _stack(lu_rows, 2 * m),
                "outcomes": np.asarray(json.dumps(outcomes, sort_keys=True)),
                "epsilon": np.asarray(eps), "delta": np.asarray(dlt),
                "status": np.asarray(status)}

    return cache.get_or_build("unlearned", config, build)


def _stack(rows: list, m2: int) -> np.ndarray:
    if not rows:  # regression: no posterior attack
        return np.zeros((0, m2, 1))
    return np.asarray(rows, np.float64).reshape(len(rows), m2, -1)


def _family(method: str) -> str:
    """The family of a registered method (``plugin`` for unknown names)."""
    try:
        return _methods.get_method(method).family
    except _validate.ValidationError:
        return "plugin"


def _run_method(name: str, task: Task, F: np.ndarray, keep: np.ndarray, ev: _Eval,
                cfg: BenchConfig, cache: Cache, base: dict) -> dict:
    meth = _methods.resolve_method(name)
    rec: dict[str, Any] = {"name": name, "family": meth.family, "summary": meth.summary,
                           "paper": meth.paper}
    why = meth.supports(task)
    if why:
        return {**rec, "status": "skipped", "reason": why, "metrics": {}}
    model = meth.build(task, int(F.size))
    rec["hyperparameters"] = model.hyperparameters
    N = cfg.ensemble
    oracle = _oracle(task, model, name, ev, keep, cfg, cache, base)
    ens = _ensemble(task, model, name, F, keep, ev, cfg, cache, base)
    ok = int(ens["stat"].shape[0])
    outcomes = json.loads(str(ens["outcomes"]))
    eps, dlt, status = float(ens["epsilon"]), float(ens["delta"]), str(ens["status"])
    rec["outcomes"] = outcomes
    rec["certificate"] = {"status": status, "epsilon": eps, "delta": dlt}
    rec["models"] = {"unlearned": ok, "oracle": int(oracle["stat"].shape[0])}
    met: dict[str, dict] = {}
    if ok < 8:
        rec.update(status="failed", metrics={k.key: _nan() for k in METRICS},
                   reason=f"only {ok} of {N} requests returned a model ({outcomes})")
        return rec
    accs, dist_p, dist_y = ens["accuracy"], ens["param_distance"], ens["prediction_distance"]
    secs, grads = ens["seconds"], ens["grad_evals"]
    A = np.asarray(accs)
    a = cfg.alpha
    met["test_accuracy"] = _iv(utility.mean_ci(A[:, 0], a))
    met["retain_accuracy"] = _iv(utility.mean_ci(A[:, 1], a))
    met["forget_accuracy"] = _iv(utility.mean_ci(A[:, 2], a))
    fcols = ev.splits["forget"]
    Q = oracle["stat"][:N]
    if task.kind != "regression":
        met["forget_accuracy"]["oracle"] = float(np.mean(Q[:, fcols] > 0))
    met["param_distance"] = _iv(utility.mean_ci(dist_p, a)) if dist_p.size else _nan()
    met["prediction_distance"] = _iv(utility.mean_ci(dist_y, a)) if dist_y.size else _nan()
    U = ens["stat"]
    k_u = distance.klom(U, Q)
    # the null: KLoM between two random halves of the 2N oracle models (independent seeds)
    null = distance.klom_null(oracle["stat"][:2 * N], N, ev.splits, alpha=a, seed=cfg.seed,
                              num_partitions=100)
    for split, cols in ev.splits.items():
        row = _iv(distance.percentile_ci(k_u[cols], 95.0, alpha=a, seed=cfg.seed), len(cols))
        row["null"] = _iv(null[split], len(cols))
        met[f"klom_{split}"] = row
    ul = lira.ulira_audit(U[:, fcols], Q[:, fcols], alpha=a, seed=cfg.seed, num_resamples=200)
    ul0 = lira.ulira_audit(oracle["stat"][N:2 * N][:, fcols], Q[:, fcols], alpha=a,
                           seed=cfg.seed, num_resamples=200)
    met["ulira_auc"] = {"value": ul.auc, "lower": ul.lower, "upper": ul.upper, "n": len(fcols),
                        "null": {"value": ul0.auc, "lower": ul0.lower, "upper": ul0.upper}}
    if ens["mia_original"].shape[0] >= 4:
        h = ens["mia_original"].shape[0] // 2
        m2 = ens["mia_original"].shape[1]
        member = np.tile(np.r_[np.ones(m2 // 2, np.int64), np.zeros(m2 // 2, np.int64)], N)

        def pairs(sl: slice) -> mia.PosteriorPairs:
            lo, lu = ens["mia_original"][sl], ens["mia_unlearned"][sl]
            k = lo.shape[0]
            return mia.PosteriorPairs(lo.reshape(k * m2, -1), lu.reshape(k * m2, -1),
                                      member[: k * m2], np.repeat(np.arange(k), m2), [], [])

        att = mia.chen_attack(pairs(slice(0, h)), pairs(slice(h, None)),
                              features=("sorted_diff",), classifier=cfg.attack, seed=cfg.seed,
                              alpha=a)
        # the rows of one seed share its models (and their noise): a cluster bootstrap over
        # seeds, not DeLong's interval for independent rows
        tgt = pairs(slice(h, None))
        p1 = att.scores["sorted_diff"]
        pos = tgt.member == 1
        auc = audit_stats.auc_cluster_bootstrap(p1[pos], p1[~pos], tgt.set_id[pos],
                                                tgt.set_id[~pos], num_resamples=500,
                                                seed=cfg.seed, alpha=a)
        met["mia_auc"] = {"value": auc.auc, "lower": auc.lower, "upper": auc.upper,
                          "n": auc.n_pos + auc.n_neg, "delong": att.auc["sorted_diff"]._asdict()}
    else:
        met["mia_auc"] = _nan()
    met["epsilon_certified"] = {"value": eps, "lower": None, "upper": None, "n": ok,
                                "delta": dlt, "status": status}
    met["epsilon_lower"] = _audit(model, name, task, F, cfg, cache, base, ens)
    met["seconds"] = _iv(utility.mean_ci(secs, a))
    met["grad_evals"] = _iv(utility.mean_ci(grads, a)) if grads.size and bool(
        np.all(np.isfinite(grads))) else _nan()
    met["oracle_seconds"] = _iv(utility.mean_ci(oracle["seconds"][1:], a))
    rec.update(status="ok", metrics=met)
    return rec


def _relative(records: list[dict], alpha: float) -> None:
    ref = next((r for r in records if r["name"] == "retrain" and r["status"] == "ok"), None)
    for r in records:
        if r["status"] != "ok":
            continue
        for key, out in (("seconds", "seconds_relative"), ("grad_evals", "grad_evals_relative")):
            v = r["metrics"].get(key, _nan())
            base = ref["metrics"].get(key, _nan())["value"] if ref else float("nan")
            base = _f(base)
            rel = utility.relative_cost(_f(v.get("value")), base)
            lo = utility.relative_cost(_f(v["lower"]), base) if v.get("lower") is not None else None
            hi = utility.relative_cost(_f(v["upper"]), base) if v.get("upper") is not None else None
            r["metrics"][out] = {"value": rel, "lower": lo, "upper": hi, "n": v.get("n"),
                                 "retrain": base}


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _score(metric: Metric, m: dict) -> float:
    v = m.get("value")
    if metric.key == "epsilon_certified" and m.get("status") in ("none", "fails"):
        return math.inf  # no certificate (a results file stores inf as null)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return float("nan")
    if metric.better == "higher":
        return -v
    if metric.better == "half":
        return abs(v - 0.5)
    if metric.better == "oracle":
        return abs(v - m["oracle"]) if "oracle" in m else float("nan")
    return v


def rank(records: Sequence[dict]) -> dict[str, list[str]]:
    """Per metric, the methods with a value, best first (ties keep the run's order)."""
    out = {}
    for metric in METRICS:
        scored = [(_score(metric, r["metrics"].get(metric.key, {})), i, r["name"])
                  for i, r in enumerate(records) if r["status"] == "ok"]
        scored = [s for s in scored if not math.isnan(s[0])]
        out[metric.key] = [name for _, _, name in sorted(scored)]
    for r in records:
        r["ranks"] = {k: (v.index(r["name"]) + 1 if r["name"] in v else None)
                      for k, v in out.items()}
    return out


def _eval_rows(task: Task, F: np.ndarray, keep: np.ndarray, cfg: BenchConfig) -> _Eval:
    rng = np.random.default_rng(cfg.seed + 3)
    r = np.sort(rng.choice(keep, size=min(cfg.retain_eval, keep.size), replace=False))
    v = np.arange(min(cfg.val_eval, task.X_test.shape[0]))
    X = np.concatenate([task.X_train[F], task.X_train[r], task.X_test[v]])
    y = np.concatenate([task.y_train[F], task.y_train[r], task.y_test[v]])
    a, b = F.size, F.size + r.size
    return _Eval(X, y, {"forget": np.arange(a), "retain": np.arange(a, b),
                        "val": np.arange(b, X.shape[0])})


def run(config: BenchConfig | None = None, *, cache: Cache | None = None,
        results_dir: str | Path | None = None, resume: bool = False) -> dict:
    """Run the benchmark and return its report (a JSON-ready dict).

    Args:
      config: the run (:class:`BenchConfig`; default ``BenchConfig()``).
      cache: the oracle cache (default: :class:`~certun.bench.cache.Cache` at the default
        directory).
      results_dir: where each finished method's record is written (``methods/NAME.json``,
        atomically) so that ``resume`` can continue an interrupted run; the report files are
        written by :func:`certun.bench.report.write_results`.
      resume: reuse the records in ``results_dir`` whose configuration matches.

    Returns:
      ``{"config", "task", "forget", "methods": [records], "ranking", "metrics", "cache",
      "seconds", ...}``. The run is in float64 (:func:`certun.x64`, scoped to the call).
    """
    from certun import x64

    with x64():
        return _run(config, cache=cache, results_dir=results_dir, resume=resume)


def _run(config: BenchConfig | None, *, cache: Cache | None,
         results_dir: str | Path | None, resume: bool) -> dict:
    from certun import provenance

    config = BenchConfig() if config is None else config
    if not isinstance(config, BenchConfig):
        raise _validate.ValidationError("config must be a certun.bench.BenchConfig")
    _validate.integer(ensemble=config.ensemble, minimum=8)
    _validate.integer(seed=config.seed, minimum=0)
    _validate.integer(retain_eval=config.retain_eval, minimum=1)
    _validate.integer(val_eval=config.val_eval, minimum=1)
    _validate.integer(audit_runs=config.audit_runs, minimum=0)
    _validate.integer(audit_training_runs=config.audit_training_runs, minimum=0)
    _validate.in_range(0.0, 1.0, alpha=config.alpha)
    _validate.choice(("rf", "dt", "lr"), attack=config.attack)
    if not config.methods:
        raise _validate.ValidationError("methods is empty; name at least one method")
    for spec in config.methods:
        _methods.resolve_method(spec)
    t_start = time.perf_counter()
    cache = cache or Cache()
    task = load_task(config.task, lam=config.lam, seed=0)
    F = select_forget(config.forget, task.X_train, task.y_train)
    keep = np.setdiff1d(np.arange(task.n_train), F)
    ev = _eval_rows(task, F, keep, config)
    base = {"task": task.describe(), "data": _digest(task.X_train, task.y_train),
            "forget": F.tolist(), "ensemble": config.ensemble, "seed": config.seed,
            "eval": _digest(ev.X, ev.y)}
    rdir = Path(results_dir) if results_dir is not None else None
    records = []
    with progress_bar(len(config.methods), "methods") as bar:
        for spec in config.methods:
            key = config_hash({**base, "method": spec, "alpha": config.alpha,
                               "audit_runs": config.audit_runs, "attack": config.attack,
                               "audit_training_runs": config.audit_training_runs,
                               "audit_training": config.audit_training})
            path = rdir / "methods" / f"{spec.replace(':', '__')}.json" if rdir else None
            rec = None
            if resume and path is not None and path.exists():
                try:
                    old = json.loads(path.read_text(encoding="utf-8"))
                    rec = old["record"] if old.get("key") == key else None
                except (OSError, ValueError, KeyError):
                    rec = None
                if rec is not None:
                    rec["resumed"] = True
            if rec is None:
                t0 = time.perf_counter()
                try:
                    rec = _run_method(spec, task, F, keep, ev, config, cache, base)
                except (ValueError, RuntimeError, ArithmeticError) as exc:
                    # one method's failure is its row of the leaderboard, not the run's end
                    meth = _methods.resolve_method(spec)
                    rec = {"name": spec, "family": meth.family, "summary": meth.summary,
                           "paper": meth.paper, "status": "failed", "metrics": {},
                           "reason": f"{type(exc).__name__}: {exc}"}
                rec["wall_seconds"] = time.perf_counter() - t0
                if path is not None:
                    provenance.write_results(path, {"key": key, "record": rec})
            records.append(rec)
            bar.advance(1, info=spec)
    _relative(records, config.alpha)
    ranking = rank(records)
    return {
        "config": config.describe(),
        "task": task.describe(),
        "forget": {**config.forget.describe(), "rows": F.tolist(), "m": int(F.size)},
        "eval_rows": {k: int(len(v)) for k, v in ev.splits.items()},
        "methods": records,
        "ranking": ranking,
        "metrics": [m._asdict() for m in METRICS],
        "cache": {"dir": str(cache.root), "hits": cache.hits, "misses": cache.misses,
                  "rebuilt": list(cache.rebuilt), "enabled": cache.enabled},
        "versions": provenance.package_versions(),
        "started": provenance.utc_now(),
        "seconds": time.perf_counter() - t_start,
        "seeds": {"models": f"jax.random.fold_in(key({config.seed}), i), i < {config.ensemble}",
                  "oracle": f"jax.random.fold_in(key({config.seed + 1}), i), "
                            f"i < {2 * config.ensemble}",
                  "forget": config.forget.seed, "audit": config.seed + 7},
    }
